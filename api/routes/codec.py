"""`POST /codec/encode` and `/codec/decode`: the Temporal codec-server protocol, for admins.

The Temporal UI and CLI (`--codec-endpoint`) send `{"payloads": [...]}` in proto JSON (metadata values and
data in base64) and show what comes back, so an operator with an admin key reads prompts that history holds
encrypted. The UI calls from its own origin, so these routes answer CORS themselves: Starlette's middleware
would apply to the whole app, and nothing else here is meant for another origin.

The Temporal UI cannot send a bearer key, but set to "include cross-origin credentials" it sends cookies: the
same routes under `/ui/codec` (where the browser sends the Kintsugi UI's session cookie, whose path is `/ui`)
also take the platform admin's UI session.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.routing import APIRoute
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from api.auth import Principal
from api.deps import SettingsDep, get_principal
from api.errors import ApiError
from api.ui.auth import SESSION_COOKIE, LoginRequired, current_user
from client.codec import EncryptionCodec, PayloadUndecryptable
from schemas.tenants import ALL_TENANTS
from settings import Settings

ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
"""What the Temporal UI sends: its configured token, JSON, and the namespace the payloads belong to."""
PREFLIGHT_MAX_AGE_S = 600


def allowed_origins(settings: Settings) -> frozenset[str]:
    """`KINTSUGI_CODEC_CORS_ORIGINS`, else the Temporal UI's origin; the dev server's UI is reached as
    `127.0.0.1` or `localhost`, whichever the operator typed, so both."""
    configured = {origin.strip().rstrip("/") for origin in settings.codec_cors_origins.split(",") if origin.strip()}
    if configured:
        return frozenset(configured)
    ui = settings.temporal_ui_base_url
    return frozenset({ui, ui.replace("://127.0.0.1:", "://localhost:")})


def cors_headers(request: Request) -> dict[str, str]:
    """The headers that let the calling origin read the answer; none for an origin not allowed (the browser
    then withholds the answer from its page). Credentials are allowed: the UI may be set to include them."""
    origin = request.headers.get("origin")
    if origin is None or origin not in allowed_origins(request.app.state.settings):
        return {"Vary": "Origin"}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}


class CorsRoute(APIRoute):
    """A route whose every answer, errors included, carries the CORS headers: a browser hides a refusal
    without them, and the operator would see a CORS failure instead of "401: the key is not valid"."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_cors(request: Request) -> Response:
            try:
                response = await handler(request)
            except ApiError as err:
                err.headers.update(cors_headers(request))
                raise
            response.headers.update(cors_headers(request))
            return response

        return with_cors


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The bearer key when one is sent (the CLI, scripts), else the UI session the browser sent along.

    The session only counts on a request from an allowed origin: a browser attaches the cookie to whatever any
    same-site page asks for, and only the Temporal UI is meant to use it here.

    Raises:
        ApiError: 401 without a key or a valid session.
    """
    if authorization is not None or SESSION_COOKIE not in request.cookies:
        return await get_principal(request, authorization)
    if request.headers.get("origin") not in allowed_origins(request.app.state.settings):
        raise ApiError(401, "unauthorized", "a UI session is accepted only from the Temporal UI's origin")
    try:
        return (await current_user(request)).principal
    except LoginRequired:
        raise ApiError(401, "unauthorized", "the UI session has expired or its key was revoked: log in again") from None


async def platform_admin(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    """Only the platform admin: one key decrypts every tenant's payloads, so a tenant's own admin key, which
    must never read another tenant's prompts, is refused (and so is a viewer's or app's key of the default
    tenant)."""
    principal.require("admin")
    if principal.scope is not ALL_TENANTS:
        raise ApiError(403, "forbidden", "the codec is for the platform admin (KINTSUGI_ADMIN_API_KEY)")
    return principal


PlatformAdminDep = Annotated[Principal, Depends(platform_admin)]
router = APIRouter(tags=["codec"], route_class=CorsRoute)
UI_PREFIX = "/ui/codec"
"""The routes again, where the browser sends the UI session cookie (`api.ui.auth.COOKIE_PATH`)."""


@router.options("/codec/{operation}", include_in_schema=False)
@router.options(UI_PREFIX + "/{operation}", include_in_schema=False)
async def preflight(request: Request, operation: str) -> Response:
    """The browser's preflight (sent without credentials, so no key is asked for)."""
    if operation not in ("encode", "decode"):
        raise ApiError(404, "not_found", f"no codec operation {operation!r}")
    headers = {
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
    }
    return Response(status_code=204, headers=headers)


@router.post("/codec/encode")
@router.post(UI_PREFIX + "/encode", include_in_schema=False)
async def encode(request: Request, settings: SettingsDep, _: PlatformAdminDep) -> dict[str, Any]:
    """Payloads encrypted as the workers would encrypt them (the UI's and CLI's inputs to a workflow)."""
    codec = _codec(settings)
    return _payloads_json(await codec.encode(await _payloads(request)))


@router.post("/codec/decode")
@router.post(UI_PREFIX + "/decode", include_in_schema=False)
async def decode(request: Request, settings: SettingsDep, _: PlatformAdminDep) -> dict[str, Any]:
    """Payloads decrypted; a payload that was never encrypted comes back as it was."""
    codec = _codec(settings)
    try:
        return _payloads_json(await codec.decode(await _payloads(request)))
    except PayloadUndecryptable as err:
        raise ApiError(400, "payload_undecryptable", str(err), {"key_id": err.key_id}) from None


def _codec(settings: Settings) -> EncryptionCodec:
    # Built per call (microseconds): the keys are validated at start-up (`Settings`), nothing to cache.
    if not settings.codec_key:
        raise ApiError(409, "codec_not_configured", "KINTSUGI_CODEC_KEY is not set: payloads are not encrypted")
    return EncryptionCodec.from_keys(settings.codec_key, settings.codec_previous_keys)


async def _payloads(request: Request) -> list[Payload]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "malformed_json", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_payloads", 'the body must be {"payloads": [...]}')
    try:
        return list(json_format.ParseDict(body, Payloads()).payloads)
    except json_format.ParseError as err:
        raise ApiError(400, "invalid_payloads", f"not Temporal payloads in proto JSON: {err}") from None


def _payloads_json(payloads: list[Payload]) -> dict[str, Any]:
    return {"payloads": [json_format.MessageToDict(payload) for payload in payloads]}
