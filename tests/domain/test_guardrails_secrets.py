"""Credentials by shape; placeholders are not credentials."""

from __future__ import annotations

import pytest

from domain.guardrails.secrets import find_secrets

OPENAI = "sk-proj-Q2hhbmdlTWVQbGVhc2U4NzY1NDMyMTBhYmNkZWZnaGlq"
ANTHROPIC = "sk-ant-api03-Zm9vQmFyQmF6MTIzNDU2Nzg5MGFiY2RlZkdISUpLTE1O"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


def found(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in find_secrets(text)]


@pytest.mark.parametrize(
    "key",
    [
        OPENAI,
        ANTHROPIC,
        "AKIAIOSFODNN7EXAMPLE",
        "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",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    ],
)
def test_provider_keys_are_api_keys(key: str) -> None:
    assert found(f"my key is {key} ok") == [("api_key", key)]


def test_a_bearer_token_is_found_without_the_word_bearer() -> None:
    assert found("Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0ZZ") == [
        ("api_key", "9f8e7d6c5b4a39281706f5e4d3c2b1a0ZZ")
    ]
    assert found(f"Authorization: Bearer {JWT}") == [("jwt", JWT)]


def test_a_jwt_alone_is_a_jwt() -> None:
    assert found(f"token={JWT}") == [("jwt", JWT)]


def test_a_private_key_block_is_found_whole() -> None:
    block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1c\nabc==\n-----END RSA PRIVATE KEY-----"
    assert found(f"here:\n{block}\nthanks") == [("private_key", block)]


def test_a_truncated_private_key_is_found_to_the_end_of_the_text() -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    assert found(text) == [("private_key", text)]


def test_an_aws_secret_is_found_without_its_variable_name() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert found(f"aws_secret_access_key = {secret}") == [("api_key", secret)]


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer <token>",
        "Bearer YOUR_TOKEN_GOES_HERE_PLEASE",
        "set OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxx",
        "What does sk-learn stand for?",
        "use sk-this-is-a-very-long-identifier-name in the docs",
        "How do I rotate an AWS access key?",
    ],
)
def test_placeholders_and_questions_about_keys_are_not_secrets(text: str) -> None:
    assert found(text) == []
