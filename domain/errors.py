"""Domain errors: what went wrong in the product's terms. `api/errors.py` maps each family to an HTTP status;
nothing here knows HTTP."""

from __future__ import annotations

from typing import Any, ClassVar

from schemas import errors


class DomainError(Exception):
    """Base of every domain error; `code` is the stable machine-readable code a caller sees."""

    code: ClassVar[str] = "domain_error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class NotFound(DomainError):
    """The thing named does not exist, or belongs to another tenant (which must look the same)."""


class InvalidRequest(DomainError):
    """The request is well-formed JSON but asks for something that cannot be done as asked."""


class Conflict(DomainError):
    """The request is valid but the resource's current state refuses it."""


class TooLarge(DomainError):
    """The request is valid but too big to be kept durably."""


class JobInputTooLarge(TooLarge):
    code = "payload_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the job's input is {size} bytes, over the {limit} a durable job keeps in its history: "
            "pass large images and files by URL",
            {"size": size, "limit": limit},
        )


class JobNotFound(NotFound):
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id}")


class UnknownModel(NotFound):
    code = "unknown_model"

    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__(f"no route for model {model!r}", {"models": known})


class InvalidCursor(InvalidRequest):
    code = "invalid_cursor"

    def __init__(self) -> None:
        super().__init__("cursor is not one this API returned")


class InvalidFilter(InvalidRequest):
    code = "invalid_filter"


class JobFinished(Conflict):
    code = "job_finished"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} has already finished")


class JobNotParked(Conflict):
    code = "job_not_parked"


class UnsupportedParameter(InvalidRequest):
    """No deployment of the route can honour a field of the request (`domain.capabilities`)."""

    code = errors.UNSUPPORTED_PARAMETER

    def __init__(self, model: str, refused: dict[str, list[str]]) -> None:
        param = next(iter(refused.values()))[0]
        each = "; ".join(f"{deployment}: {', '.join(fields)}" for deployment, fields in refused.items())
        super().__init__(
            f"no deployment of route {model!r} can honour {param!r} ({each})",
            {"param": param, "deployments": refused},
        )
        self.param = param


class ModelTypeMismatch(InvalidRequest):
    """A chat request for an embedding route, or the reverse."""

    code = errors.MODEL_TYPE_MISMATCH

    def __init__(self, model: str, *, serves: str, asked: str) -> None:
        super().__init__(f"route {model!r} serves {serves} requests, not {asked}", {"model": model, "serves": serves})
