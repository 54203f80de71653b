"""Typed details that ride in an `ApplicationError`, and the one reader for them.

Temporal carries `ApplicationError.details` as payloads; the pydantic converter turns a model into a JSON
object on the way out, and the receiver gets a plain dict back. `read_details` validates it into the model
the sender used, so neither side parses dicts by hand.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError

DetailsT = TypeVar("DetailsT", bound=BaseModel)


class CallFailureDetails(BaseModel):
    """Carried by a failed `call_model` attempt: history keeps only the last attempt's failure, so the
    attempt number is how the job counts the calls a deployment took."""

    attempt: int


def read_details(err: BaseException | None, model: type[DetailsT]) -> DetailsT | None:
    """The first detail of an `ApplicationError` as `model`; None when there is none or it is another shape."""
    if not isinstance(err, ApplicationError) or not err.details:
        return None
    detail = err.details[0]
    if isinstance(detail, model):
        return detail
    try:
        return model.model_validate(detail)
    except ValidationError:
        return None
