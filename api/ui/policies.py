"""`/ui/policies`: a tenant's policies, each with its history (a diff per version) and a dry run; admins create
and edit them as YAML or JSON.

Reads and writes go through what `/v1/policies` uses (`store.queries.policies`, `parse_document`, `dry_run`), so
the page and the API never disagree about what a document means or what a policy decides."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.errors import ApiError
from api.routes.policies import check_name, dry_run, stored_document
from api.ui.auth import AdminUserDep, CsrfUserDep, UiError, UiUser, UserDep
from api.ui.rendering import render
from domain.errors import DomainError
from schemas.audit import Actor
from schemas.messages import ChatMessage
from schemas.policies import EvaluateRequestBody, PolicyDocument, PolicyEvaluation
from store.models import Policy, PolicyVersion
from store.queries import policies as policy_queries

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZE = 100
Checkbox = Annotated[str | None, Form()]
"""An HTML checkbox: sent (as `on`) only when ticked."""


class FieldError(Exception):
    """What is wrong with one field of a form, shown beside it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name
        self.message = message


@dataclass
class PolicyForm:
    """A create or edit form as the user left it: what they typed comes back with the errors beside it."""

    name: str = ""
    default: bool = False
    document: str = ""
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class DryRunForm:
    model: str = ""
    prompt: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    result: PolicyEvaluation | None = None

    @property
    def redacted_prompt(self) -> str:
        return "\n\n".join(m.text() for m in self.result.redacted_messages) if self.result else ""


@dataclass(frozen=True)
class DiffLine:
    kind: Literal["file", "hunk", "add", "del", "same"]
    text: str


@dataclass(frozen=True)
class VersionView:
    version: PolicyVersion
    diff: list[DiffLine]
    """Against the version before it (version 1: against nothing)."""


def to_yaml(document: dict[str, Any]) -> str:
    """A stored document as the form shows it; keys in the order they were written."""
    return "" if not document else yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def parse_text(text: str) -> dict[str, Any]:
    """The textarea's YAML (JSON is YAML too), validated and as it will be stored.

    Raises:
        FieldError: on `document`, naming the line (bad YAML) or the document's path (a bad policy).
    """
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise FieldError("document", f"not valid YAML or JSON: {where}{getattr(err, 'problem', None) or err}") from err
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise FieldError("document", "the document must be a mapping (`key: value` lines, or a JSON object)")
    try:
        return stored_document(raw)
    except ApiError as err:
        raise FieldError("document", err.message) from err


def diff_lines(before: str, after: str, *, old: str, new: str) -> list[DiffLine]:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), old, new, lineterm="")
    return [DiffLine(_kind(line), line) for line in lines]


def _kind(line: str) -> Literal["file", "hunk", "add", "del", "same"]:
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    return "add" if line.startswith("+") else "del" if line.startswith("-") else "same"


def _history(versions: list[PolicyVersion]) -> list[VersionView]:
    """Newest first, each with its diff against its predecessor (the next one in the list)."""
    views = []
    for newer, older in zip(versions, [*versions[1:], None], strict=True):
        before = to_yaml(older.document) if older else ""
        old = f"version {older.version}" if older else "(nothing)"
        views.append(
            VersionView(newer, diff_lines(before, to_yaml(newer.document), old=old, new=f"version {newer.version}"))
        )
    return views


def _actor(user: UiUser) -> Actor:
    return Actor(user.principal.tenant_id, user.principal.key_id)


def _chat_routes(request: Request) -> list[str]:
    return [alias for alias, deployments in request.app.state.routes.routes.items() if deployments[0].type == "chat"]


async def _list_page(
    request: Request, user: UiUser, form: PolicyForm, *, after: str | None = None, status: int = 200
) -> Response:
    async with request.app.state.sessions() as session:
        page = await policy_queries.policy_page(
            session, tenant_id=user.principal.tenant_id, limit=PAGE_SIZE, after=after
        )
    return render(request, "policies.html", user=user, title="Policies", page=page, form=form, status_code=status)


async def _policy_of(request: Request, user: UiUser, policy_id: str) -> tuple[Policy, list[PolicyVersion]]:
    async with request.app.state.sessions() as session:
        policy = await policy_queries.get_policy(session, policy_id, user.principal.scope)
        if policy is None:
            raise UiError(404, "No such policy", f"There is no policy {policy_id!r} in your tenant.")
        return policy, await policy_queries.policy_versions(session, policy.id)


async def _detail_page(
    request: Request,
    user: UiUser,
    policy_id: str,
    *,
    form: PolicyForm | None = None,
    dry: DryRunForm | None = None,
    status: int = 200,
) -> Response:
    policy, versions = await _policy_of(request, user, policy_id)
    models = _chat_routes(request)
    return render(
        request,
        "policies_detail.html",
        user=user,
        title=f"Policy {policy.name}",
        policy=policy,
        policy_id=policy.id,
        form=form or PolicyForm(name=policy.name, default=policy.is_default, document=to_yaml(policy.document)),
        history=_history(versions),
        dry=dry or DryRunForm(model=models[0] if models else ""),
        models=models,
        status_code=status,
    )


@router.get("/policies")
async def policies_page(request: Request, user: UserDep, after: str | None = None) -> Response:
    # No name holds a NUL (PostgreSQL text cannot), and comparing with one fails the query.
    return await _list_page(request, user, PolicyForm(), after=after if after and "\x00" not in after else None)


@router.post("/policies")
async def create_policy(
    request: Request,
    user: AdminUserDep,
    name: Annotated[str, Form()] = "",
    document: Annotated[str, Form()] = "",
    default: Checkbox = None,
) -> Response:
    form = PolicyForm(name=name, default=default is not None, document=document)
    try:
        stored = parse_text(document)
    except FieldError as err:
        form.errors[err.field_name] = err.message
    try:
        check_name(name.strip())
    except ApiError:
        form.errors["name"] = "Enter a name."
    if form.errors:
        return await _list_page(request, user, form, status=422)
    async with request.app.state.sessions() as session, session.begin():
        try:
            policy = await policy_queries.create_policy(
                session,
                tenant_id=user.principal.tenant_id,
                name=name.strip(),
                document=stored,
                default=form.default,
                actor=_actor(user),
            )
        except policy_queries.PolicyNameTaken:
            form.errors["name"] = "A policy of this name already exists; pick another name."
    if form.errors:
        return await _list_page(request, user, form, status=409)
    request.app.state.policies.invalidate()
    return RedirectResponse(f"/ui/policies/{policy.id}", status_code=303)


@router.get("/policies/{policy_id}")
async def policy_page(request: Request, user: UserDep, policy_id: str) -> Response:
    return await _detail_page(request, user, policy_id)


@router.post("/policies/{policy_id}")
async def update_policy(
    request: Request,
    user: AdminUserDep,
    policy_id: str,
    document: Annotated[str, Form()] = "",
    default: Checkbox = None,
) -> Response:
    """A new version; the form's checkbox is the whole truth about `default` (unticked unsets it)."""
    form = PolicyForm(default=default is not None, document=document)
    try:
        stored = parse_text(document)
    except FieldError as err:
        form.errors[err.field_name] = err.message
        return await _detail_page(request, user, policy_id, form=form, status=422)
    async with request.app.state.sessions() as session, session.begin():
        policy = await policy_queries.update_policy(
            session,
            policy_id=policy_id,
            scope=user.principal.scope,
            document=stored,
            default=form.default,
            actor=_actor(user),
        )
    if policy is None:
        raise UiError(404, "No such policy", f"There is no policy {policy_id!r} in your tenant.")
    request.app.state.policies.invalidate()
    return RedirectResponse(f"/ui/policies/{policy_id}#history", status_code=303)


@router.post("/policies/{policy_id}/delete")
async def delete_policy(request: Request, user: AdminUserDep, policy_id: str) -> Response:
    async with request.app.state.sessions() as session, session.begin():
        deleted = await policy_queries.delete_policy(
            session, policy_id=policy_id, scope=user.principal.scope, actor=_actor(user)
        )
    if deleted is None:
        raise UiError(404, "No such policy", f"There is no policy {policy_id!r} in your tenant.")
    request.app.state.policies.invalidate()
    return RedirectResponse("/ui/policies", status_code=303)


@router.post("/policies/{policy_id}/evaluate")
async def evaluate_policy(
    request: Request,
    user: CsrfUserDep,
    policy_id: str,
    model: Annotated[str, Form()] = "",
    prompt: Annotated[str, Form()] = "",
) -> Response:
    """The dry run: any role may ask (it changes nothing). htmx gets the section back to swap in place, with
    any error inside it (htmx swaps no 4xx); a plain form gets the whole page."""
    dry = DryRunForm(model=model, prompt=prompt)
    if not model:
        dry.errors["model"] = "Choose a model."
    if not prompt.strip():
        dry.errors["prompt"] = "Enter a prompt to evaluate."
    if not dry.errors:
        policy, _ = await _policy_of(request, user, policy_id)
        body = EvaluateRequestBody(model=model, messages=[ChatMessage(role="user", content=prompt)])
        try:
            async with request.app.state.sessions() as session, session.begin():
                dry.result = await dry_run(
                    request.app.state,
                    session,
                    tenant_id=policy.tenant_id,
                    document=PolicyDocument.model_validate(policy.document),
                    body=body,
                )
        except (ApiError, DomainError) as err:  # an unknown or unusable route: the model field's problem
            dry.errors["model"] = err.message
    if request.headers.get("HX-Request") == "true":
        return _dry_run_section(request, user, policy_id, dry)
    return await _detail_page(request, user, policy_id, dry=dry, status=422 if dry.errors else 200)


def _dry_run_section(request: Request, user: UiUser, policy_id: str, dry: DryRunForm) -> HTMLResponse:
    return render(
        request,
        "_policy_dry_run.html",
        user=user,
        title="Policy",
        policy_id=policy_id,
        dry=dry,
        models=_chat_routes(request),
    )
