"""Settings: the admin and codec key rules, and upstream keys read from the environment for the worker."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.routes import AnthropicProvider, OpenAIProvider
from settings import DEV_ADMIN_KEY, Settings
from tests.support.common import SHIPPED_ROUTES

CODEC_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("key", ["", DEV_ADMIN_KEY])
def test_outside_dev_a_placeholder_admin_key_stops_start_up(key: str) -> None:
    with pytest.raises(ValidationError, match="KINTSUGI_ADMIN_API_KEY"):
        Settings(env="prod", admin_api_key=key)

    assert Settings(env="dev", admin_api_key=key).admin_api_key == key
    assert Settings(env="prod", admin_api_key="a-real-secret", codec_key=CODEC_KEY).env == "prod"


def test_outside_dev_a_missing_codec_key_stops_start_up() -> None:
    with pytest.raises(ValidationError, match="KINTSUGI_CODEC_KEY must be set"):
        Settings(env="prod", admin_api_key="a-real-secret")

    assert Settings(env="dev").codec_key == ""


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"codec_key": "not-base64!"}, "KINTSUGI_CODEC_KEY"),
        ({"codec_key": base64.b64encode(b"16 bytes, short!").decode()}, "KINTSUGI_CODEC_KEY"),
        ({"codec_key": CODEC_KEY, "codec_previous_keys": f"{CODEC_KEY},tooshort"}, "KINTSUGI_CODEC_PREVIOUS_KEYS"),
    ],
)
def test_a_codec_key_that_is_not_32_bytes_of_base64_stops_start_up_without_showing_it(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named) as refused:
        Settings(env="dev", **settings)

    for value in settings.values():
        assert value not in str(refused.value)


def test_upstream_keys_come_from_the_env_vars_the_routes_file_names() -> None:
    settings = Settings(env="test", admin_api_key="x", routes_file=SHIPPED_ROUTES)
    named = {
        name: provider.api_key_env
        for name, provider in settings.routes.providers.items()
        if isinstance(provider, OpenAIProvider | AnthropicProvider) and provider.api_key_env
    }
    assert named, "the shipped routes file names at least one api_key_env"
    name, env_name = next(iter(named.items()))

    keys = settings.upstream_keys({env_name: "sk-from-env", "UNRELATED": "x"})

    assert keys == {name: "sk-from-env"}
    assert settings.upstream_keys({}) == {}
