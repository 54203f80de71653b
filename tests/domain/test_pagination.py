"""List cursors: what the API hands out comes back intact; anything else is refused, never a silent restart."""

from __future__ import annotations

import pytest

from domain.errors import InvalidCursor
from domain.pagination import decode_cursor, encode_cursor


def test_a_cursor_round_trips_its_page_token() -> None:
    token = bytes(range(256))
    cursor = encode_cursor(token)

    assert cursor is not None and cursor.isascii()
    assert decode_cursor(cursor) == token
    assert encode_cursor(None) is None and encode_cursor(b"") is None
    assert decode_cursor(None) is None and decode_cursor("") is None


@pytest.mark.parametrize("cursor", ["\x00\xff", "not base64!", "abc", "====", "é"])
def test_a_cursor_this_api_did_not_hand_out_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
