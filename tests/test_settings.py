"""Settings: the admin key rule, and upstream keys read from the environment for the worker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.routes import AnthropicProvider, OpenAIProvider
from settings import DEV_ADMIN_KEY, Settings
from tests.support.common import SHIPPED_ROUTES


@pytest.mark.parametrize("key", ["", DEV_ADMIN_KEY])
def test_outside_dev_a_placeholder_admin_key_stops_start_up(key: str) -> None:
    with pytest.raises(ValidationError, match="KINTSUGI_ADMIN_API_KEY"):
        Settings(env="prod", admin_api_key=key)

    assert Settings(env="dev", admin_api_key=key).admin_api_key == key
    assert Settings(env="prod", admin_api_key="a-real-secret").env == "prod"


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
