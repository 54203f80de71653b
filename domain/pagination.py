"""List cursors: an opaque, URL-safe string around the store's own page token."""

from __future__ import annotations

import base64
import binascii

from domain.errors import InvalidCursor


def encode_cursor(token: bytes | None) -> str | None:
    return base64.urlsafe_b64encode(token).decode() if token else None


def decode_cursor(cursor: str | None) -> bytes | None:
    """The page token inside `cursor`; None for no cursor. Anything this API did not hand out (bad
    characters, bad padding, nothing inside) raises `InvalidCursor` rather than silently restarting the list."""
    if not cursor:
        return None
    try:
        token = base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError) as err:
        raise InvalidCursor from err
    if not token:
        raise InvalidCursor
    return token
