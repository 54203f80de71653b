"""`/ui/login` and `/ui/logout`: an API key in, a signed session cookie out (never the key itself)."""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import authenticate
from api.errors import ApiError
from api.ui.auth import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    LoginRequired,
    csrf_checked_user,
    current_user,
)
from api.ui.rendering import render
from api.ui.session import LOGIN_FORM_TTL_S, SESSION_TTL_S, new_login_form, new_session, read_login_form, sign
from settings import Settings
from store import queries

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login")
async def login(
    request: Request, key: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """A good key: the session cookie and a redirect to the dashboard. A bad one: the form again, the error
    beside the field, nothing set."""
    settings: Settings = request.app.state.settings
    form = read_login_form(request.cookies.get(LOGIN_COOKIE), settings.ui_session_key, now=time.time())
    if form is None or not hmac.compare_digest(csrf_token.encode(), form.csrf_token.encode()):
        # Login CSRF: a cross-site form could otherwise log a victim into the attacker's tenant.
        return _login_page(request, form_error="The form expired. Enter your key again.", status_code=403)
    key = key.strip()
    if not key:
        return _login_page(request, key_error="Enter an API key.", status_code=422)
    try:
        principal = await authenticate(request.app.state.sessions, key, admin_key=settings.admin_api_key)
    except ApiError as err:  # `authenticate` raises only its 401 for a key it does not know
        return _login_page(request, key_error="This key is not valid (unknown or revoked).", status_code=err.status)
    secret = settings.ui_session_key
    claims = new_session(key_id=principal.key_id, key_hash=queries.hash_key(key), secret=secret, now=time.time())
    response = RedirectResponse("/ui/", status_code=303)
    _set_cookie(response, request, SESSION_COOKIE, sign(claims, secret), max_age=SESSION_TTL_S)
    _set_cookie(response, request, LOGIN_COOKIE, "", max_age=0)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Clears this browser's session cookie. A live session must send its CSRF token (no cross-site logouts); a
    dead one is cleared whatever it sends. A copy of the cookie taken earlier stays valid until it expires or
    its key is revoked (`auth.current_user`): there is no server-side session to end."""
    try:
        user = await current_user(request)
    except LoginRequired:
        pass
    else:
        await csrf_checked_user(request, user)
    response = RedirectResponse("/ui/login", status_code=303)
    _set_cookie(response, request, SESSION_COOKIE, "", max_age=0)
    return response


def _login_page(
    request: Request, *, key_error: str | None = None, form_error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    """The form, with a fresh CSRF token in its hidden field and in a short-lived signed cookie."""
    settings: Settings = request.app.state.settings
    form = new_login_form(now=time.time())
    response = render(
        request,
        "login.html",
        user=None,
        title="Log in",
        status_code=status_code,
        login_csrf=form.csrf_token,
        key_error=key_error,
        form_error=form_error,
    )
    _set_cookie(response, request, LOGIN_COOKIE, sign(form, settings.ui_session_key), max_age=LOGIN_FORM_TTL_S)
    return response


def _set_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int) -> None:
    """Sets, or clears with `max_age=0`, one of the UI's cookies: every one with the same attributes, so a
    clearing matches the cookie it replaces."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure_cookies(request),
    )


def _secure_cookies(request: Request) -> bool:
    """`KINTSUGI_UI_SECURE_COOKIES` when set; else always outside dev, since behind a proxy that terminates TLS
    the API sees plain http, and in dev only on https (a dev browser on http://127.0.0.1 must get the cookie)."""
    settings: Settings = request.app.state.settings
    if settings.ui_secure_cookies is not None:
        return settings.ui_secure_cookies
    return settings.env != "dev" or request.url.scheme == "https"
