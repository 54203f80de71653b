"""Who is using the UI: the session cookie resolved to a `Principal`, checked again on every request; and the
CSRF check every UI POST passes."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth import Principal
from api.ui.session import SessionClaims, is_session_of, read_session
from settings import Settings
from store import queries
from store.models import ApiKey

SESSION_COOKIE = "kintsugi_session"
LOGIN_COOKIE = "kintsugi_login"
COOKIE_PATH = "/ui"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form (`routes.install_ui`)."""


class UiError(Exception):
    """A refusal shown as a page of the shell (`templates/error.html`) with `status`, not as API JSON."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def forbidden(message: str) -> UiError:
    """The session may not do this: its role, or a missing CSRF token."""
    return UiError(403, "Not allowed", message)


@dataclass(frozen=True)
class UiUser:
    """A logged-in session: who it is, and the token its forms must send back."""

    principal: Principal
    tenant_name: str
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return self.principal.role == "admin"


async def current_user(request: Request) -> UiUser:
    """The session's user. The key is looked up again each time, so a revoked key (or a replaced admin key)
    ends its sessions at once, not when the cookie expires.

    Raises:
        LoginRequired: no cookie, a tampered or expired one, or its key is gone.
    """
    settings: Settings = request.app.state.settings
    claims = read_session(request.cookies.get(SESSION_COOKIE), settings.ui_session_key, now=time.time())
    if claims is None:
        raise LoginRequired
    async with request.app.state.sessions() as session:
        principal = await _principal(session, claims, settings)
        tenant = await queries.get_tenant(session, principal.tenant_id)
    return UiUser(
        principal=principal, tenant_name=tenant.name if tenant else principal.tenant_id, csrf_token=claims.csrf_token
    )


async def _principal(session: AsyncSession, claims: SessionClaims, settings: Settings) -> Principal:
    secret = settings.ui_session_key
    if claims.key_id is None:
        if not is_session_of(claims, queries.hash_key(settings.admin_api_key), secret):
            raise LoginRequired
        return Principal(tenant_id=queries.DEFAULT_TENANT_ID, role="admin", key_id=None)
    # By id: the cookie holds no plaintext for `queries.find_api_key`. Its MAC must still match the row's hash,
    # and the row must not be revoked.
    key = await session.get(ApiKey, claims.key_id)
    if key is None or key.revoked_at is not None or not is_session_of(claims, key.key_hash, secret):
        raise LoginRequired
    return Principal(tenant_id=key.tenant_id, role=key.role, key_id=key.id)


UserDep = Annotated[UiUser, Depends(current_user)]


async def csrf_checked_user(request: Request, user: UserDep) -> UiUser:
    """The session's user, once the request has proved it comes from one of our pages: the session's CSRF
    token in the `X-CSRF-Token` header (htmx) or the `csrf_token` form field (plain forms). SameSite=Lax
    already keeps the cookie off cross-site POSTs; this also covers same-site attackers and old browsers.

    Raises:
        UiError: 403, the token is missing or wrong.
    """
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        field = (await request.form()).get(CSRF_FIELD)  # parsed once; the route's `Form` fields reuse it
        sent = field if isinstance(field, str) else None
    if sent is None or not hmac.compare_digest(sent.encode(), user.csrf_token.encode()):
        raise forbidden("The form's security token is missing or out of date: reload the page and try again.")
    return user


CsrfUserDep = Annotated[UiUser, Depends(csrf_checked_user)]


async def admin_user(user: CsrfUserDep) -> UiUser:
    """An admin's checked session; the pages hide admin controls from others, and this refuses them anyway."""
    if not user.is_admin:
        raise forbidden(f"This needs the admin role; you are logged in as {user.principal.role}.")
    return user


AdminUserDep = Annotated[UiUser, Depends(admin_user)]
