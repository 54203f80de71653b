"""`/ui/flags`: every feature flag as the caller's tenant gets it; admins switch them in place (htmx).

Reads and writes go through what `GET/PUT/DELETE /v1/flags` use (`app.state.flags`, `queries.set_flag`,
`queries.delete_flag`), so the page and the API never disagree about a flag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from api.ui.auth import AdminUserDep, UiError, UiUser, UserDep, forbidden
from api.ui.rendering import render
from domain.flags import FLAGS, SPECS, FlagSpec, FlagValue, global_value
from schemas.audit import Actor
from schemas.tenants import ALL_TENANTS
from store import queries
from store.flag_cache import FlagCache
from store.models import GLOBAL_SCOPE

router = APIRouter(prefix="/ui", include_in_schema=False)

Scope = Literal["tenant", "global"]
Change = Literal["on", "off", "inherit"]
"""`inherit` drops the scope's row: a tenant falls back to the global value, the global value to the default."""


@dataclass(frozen=True)
class FlagLine:
    """One row of the page."""

    spec: FlagSpec
    value: FlagValue
    """As the caller's tenant gets it."""
    global_value: FlagValue | None
    """The platform-wide value; shown (and settable) for the platform admin only."""


def _platform_admin(user: UiUser) -> bool:
    return user.is_admin and user.principal.scope is ALL_TENANTS


async def _lines(flags: FlagCache, user: UiUser, keys: tuple[str, ...]) -> list[FlagLine]:
    values = await flags.for_tenant(user.principal.tenant_id)
    rows = await flags.rows() if _platform_admin(user) else ()
    return [
        FlagLine(
            spec=SPECS[key],
            value=values[key],
            global_value=global_value(rows, key, flags.defaults) if _platform_admin(user) else None,
        )
        for key in keys
    ]


@router.get("/flags")
async def flags_page(request: Request, user: UserDep) -> Response:
    lines = await _lines(request.app.state.flags, user, tuple(spec.key for spec in FLAGS))
    return render(request, "flags.html", user=user, title="Flags", lines=lines, platform_admin=_platform_admin(user))


@router.post("/flags/{key}")
async def change_flag(
    request: Request,
    key: str,
    user: AdminUserDep,
    scope: Annotated[Scope, Form()],
    change: Annotated[Change, Form()],
) -> Response:
    """Set (`on`/`off`) or drop (`inherit`) the caller's tenant override, or the global value (platform admin
    only). htmx gets the row back to swap in place; a plain form post goes back to the page."""
    if key not in SPECS:
        raise UiError(404, "No such flag", f"There is no feature flag {key!r}.")
    if scope == "global" and not _platform_admin(user):
        raise forbidden("Only the platform admin sets a flag's global value.")
    flags: FlagCache = request.app.state.flags
    tenant_id = GLOBAL_SCOPE if scope == "global" else user.principal.tenant_id
    actor = Actor(user.principal.tenant_id, user.principal.key_id)
    async with request.app.state.sessions() as session, session.begin():
        if change == "inherit":
            await queries.delete_flag(session, key=key, tenant_id=tenant_id, actor=actor)
        else:
            await queries.set_flag(
                session,
                key=key,
                tenant_id=tenant_id,
                enabled=change == "on",
                rollout_percent=await _rollout_to_keep(session, flags, key, scope),
                actor=actor,
            )
    flags.invalidate()  # after the commit: the row rendered below, and the next job of this process, see it
    if request.headers.get("HX-Request") != "true":
        return RedirectResponse("/ui/flags", status_code=303)
    (line,) = await _lines(flags, user, (key,))
    return render(request, "_flag_row.html", user=user, title="Flags", line=line, platform_admin=_platform_admin(user))


async def _rollout_to_keep(session: AsyncSession, flags: FlagCache, key: str, scope: Scope) -> int:
    """Switching the global value keeps its rollout share (a gradual rollout survives an off/on); a tenant's
    own override is all or nothing, since a share of one tenant is either all of it or none."""
    if scope == "tenant":
        return 100
    # From the transaction, not the cache: the cache may be up to its TTL behind another admin's change.
    return global_value(await queries.flag_rows(session), key, flags.defaults).rollout_percent
