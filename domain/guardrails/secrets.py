"""Credentials in text: provider API keys by their published shapes, bearer tokens, JWTs and PEM private keys.

Keys are found by prefix and length, then kept only when their body looks random (mixed letters and digits):
the placeholders of documentation (`sk-xxxxxxxxxxxxxxxxxxxx`, `Bearer YOUR_TOKEN_GOES_HERE`) are not secrets, and
a prompt asking how keys work must not be refused.
"""

from __future__ import annotations

import re

from schemas.decisions import Finding

SecretKind = str
"""`api_key`, `jwt` or `private_key`."""

_SECRETS = re.compile(
    r"(?P<private_key>-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----"
    r"[\s\S]*?(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\Z))"
    r"|(?P<jwt>(?<![\w-])eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,})"
    r"|(?P<anthropic>(?<![\w-])sk-ant-[\w-]{20,})"
    r"|(?P<openai>(?<![\w-])sk-(?:proj-|svcacct-|admin-|None-)?[\w-]{20,})"
    r"|(?P<aws>(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![A-Za-z0-9]))"
    r"|(?P<aws_secret>(?:aws_secret_access_key|AWS_SECRET_ACCESS_KEY)[\"']?\s*[:=]\s*[\"']?(?P<aws_secret_value>[A-Za-z0-9/+=]{40})(?![\w/+=]))"
    r"|(?P<github>(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?!\w))"
    r"|(?P<slack>(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,})"
    r"|(?P<google>(?<![\w-])AIza[\w-]{35}(?![\w-]))"
    r"|(?P<bearer>\b[Bb]earer[ \t]+(?P<bearer_value>[A-Za-z0-9._~+/-]{20,}=*))"
)
_MARKERS = (
    "PRIVATE KEY", "eyJ", "sk-", "AKIA", "ASIA", "ABIA", "ACCA", "aws_secret", "AWS_SECRET", "gh", "github_pat_", "xox",
    "AIza", "Bearer", "bearer",
)  # fmt: skip
"""Every secret's text holds one of these; substring searches rule a text out faster than any pattern."""
_JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")


def _random_looking(body: str) -> bool:
    """Generated keys mix upper case, lower case and digits; words, slugs and `xxxx` placeholders do not."""
    return any(c.isdigit() for c in body) and any(c.islower() for c in body) and any(c.isupper() for c in body)


def find_secrets(text: str) -> list[Finding]:
    """The credentials in `text`, in text order, each spanning the secret itself (a bearer token without the word
    `Bearer`, an AWS secret without its variable name), so a redaction keeps the sentence readable."""
    if not any(marker in text for marker in _MARKERS):
        return []
    findings: list[Finding] = []
    for match in _SECRETS.finditer(text):
        group = match.lastgroup
        if group == "private_key":
            findings.append(Finding(kind="private_key", start=match.start(), end=match.end()))
        elif group == "jwt":
            findings.append(Finding(kind="jwt", start=match.start(), end=match.end()))
        elif group == "bearer":
            token = match.group("bearer_value")
            start, end = match.span("bearer_value")
            if _JWT.fullmatch(token):
                findings.append(Finding(kind="jwt", start=start, end=end))
            elif any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
                findings.append(Finding(kind="api_key", start=start, end=end))
        elif group == "aws_secret":
            start, end = match.span("aws_secret_value")
            findings.append(Finding(kind="api_key", start=start, end=end))
        elif group in ("openai", "anthropic"):
            if _random_looking(match.group()[3:]):
                findings.append(Finding(kind="api_key", start=match.start(), end=match.end()))
        else:
            findings.append(Finding(kind="api_key", start=match.start(), end=match.end()))
    return findings
