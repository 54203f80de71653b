"""Token estimates from text, for limits, budgets and TPM admission before a provider has counted anything."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.messages import ChatMessage, TextPart

CHARS_PER_TOKEN = 4
"""English averages about four characters a token in the GPT and Claude tokenizers; an estimate, settled later
with the provider's count."""
MESSAGE_OVERHEAD_TOKENS = 4
"""What each message's role and framing adds (OpenAI documents 3 to 4 per message)."""


def text_of(message: ChatMessage) -> Iterable[str]:
    """The text a message carries: its string content, or its text parts."""
    content = message.content
    if isinstance(content, str):
        yield content
    elif content:
        for part in content:
            if isinstance(part, TextPart):
                yield part.text


def estimate_text_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: Iterable[ChatMessage]) -> int:
    """Estimated input tokens of a chat request: its text, a quarter token a character, plus framing."""
    total = 0
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS + sum(estimate_text_tokens(text) for text in text_of(message))
    return total
