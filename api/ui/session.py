"""Signed cookie values of the web UI: the session (which API key logged in) and the login form's CSRF token.

A value is `<base64url JSON claims>.<base64url HMAC-SHA256>`: signed, not encrypted, so anyone holding the cookie
reads its claims. They name the key by id and by `key_mac`, never the plaintext nor its bare hash, and carry their
own expiry: the cookie's `Max-Age` is only a hint to the browser, a stolen value must stop working on the server
too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict

SESSION_TTL_S = 12 * 3600
LOGIN_FORM_TTL_S = 3600
"""How long a login form may stay open before its CSRF token is refused."""

Purpose = Literal["session", "login"]
"""What a value was issued for: a login form's token is never accepted as a session, nor the reverse."""


class SessionClaims(BaseModel):
    """Who is logged in. Checked again on every request against the key's row, so revoking a key ends its
    sessions."""

    model_config = ConfigDict(frozen=True)

    purpose: Literal["session"] = "session"
    key_id: str | None
    """The `api_keys` row; None for the environment's admin key, which has no row."""
    key_mac: str
    """`key_mac` of the key's hash: a session of a replaced admin key, or of a key id reused, fails."""
    csrf_token: str
    """Sent back by every form and htmx request of this session (`auth.require_csrf`)."""
    expires_at: int
    """Unix seconds."""


class LoginFormClaims(BaseModel):
    """The login form's CSRF token, held in a cookie of its own until a session exists."""

    model_config = ConfigDict(frozen=True)

    purpose: Literal["login"] = "login"
    csrf_token: str
    expires_at: int


_Claims = TypeVar("_Claims", SessionClaims, LoginFormClaims)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def new_session(*, key_id: str | None, key_hash: str, secret: bytes, now: float) -> SessionClaims:
    """A session of the key whose `queries.hash_key` is `key_hash`, for `secret` (`Settings.ui_session_key`)."""
    return SessionClaims(
        key_id=key_id,
        key_mac=key_mac(key_hash, secret),
        csrf_token=new_csrf_token(),
        expires_at=int(now) + SESSION_TTL_S,
    )


def key_mac(key_hash: str, secret: bytes) -> str:
    """The session's proof of its key: an HMAC of the key's hash under the session secret. The bare hash would
    let anyone who reads a leaked cookie test guesses of the admin key (a secret a person chose) offline.

    The prefix keeps these MACs apart from the cookies' own signatures (same key): base64url has no colon."""
    return hmac.new(secret, f"kintsugi-ui-key:{key_hash}".encode(), hashlib.sha256).hexdigest()


def is_session_of(claims: SessionClaims, key_hash: str, secret: bytes) -> bool:
    """Whether the session was issued for the key whose hash is `key_hash` (compared in constant time, as bytes:
    `compare_digest` raises on a str that is not ASCII)."""
    return hmac.compare_digest(claims.key_mac.encode(), key_mac(key_hash, secret).encode())


def new_login_form(*, now: float) -> LoginFormClaims:
    return LoginFormClaims(csrf_token=new_csrf_token(), expires_at=int(now) + LOGIN_FORM_TTL_S)


def sign(claims: SessionClaims | LoginFormClaims, key: bytes) -> str:
    body = _b64encode(claims.model_dump_json().encode())
    return f"{body}.{_b64encode(_mac(body, key))}"


def read_session(value: str | None, key: bytes, *, now: float) -> SessionClaims | None:
    """The claims of a session cookie, or None when it is missing, tampered with, expired or not a session."""
    return _read(value, key, SessionClaims, now=now)


def read_login_form(value: str | None, key: bytes, *, now: float) -> LoginFormClaims | None:
    return _read(value, key, LoginFormClaims, now=now)


def _read(value: str | None, key: bytes, model: type[_Claims], *, now: float) -> _Claims | None:
    if not value:
        return None
    body, _, mac = value.partition(".")
    try:
        valid = hmac.compare_digest(_b64decode(mac), _mac(body, key))
        claims = model.model_validate_json(_b64decode(body)) if valid else None
    except ValueError:  # both bad base64 (`binascii.Error`) and claims that do not parse (`ValidationError`)
        return None
    if claims is None or claims.expires_at <= now:
        return None
    return claims


def _mac(body: str, key: bytes) -> bytes:
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
