"""Prompts for the similarity tests: one long enough to have near-duplicates, one unrelated to it."""

from __future__ import annotations

from domain.similarity import PromptPrint, prompt_print, prompt_text
from schemas.messages import ChatMessage

PROMPT = (
    "You are a careful assistant for a travel agency. Read the customer's message below and answer in a "
    "friendly tone. Suggest at most three destinations in Europe that fit their budget, mention the best "
    "season to visit each one, and give a rough estimate of the cost of flights and hotels for a week. "
    "If the customer asks about visas, tell them to check the official embassy website before booking."
)
"""~60 words; `PROMPT.replace("Europe", "Asia")` is a near-duplicate of it."""
UNRELATED = (
    "Summarise the attached quarterly earnings report for the board: revenue growth by segment, operating "
    "margin, the main risks management identified, and how cash flow compares with the previous quarter. "
    "Keep it under two hundred words and use bullet points for the figures."
)


def user(text: str) -> list[ChatMessage]:
    """`text` as the one user message of a request."""
    return [ChatMessage(role="user", content=text)]


def printed(text: str) -> PromptPrint:
    """The print of a request whose one user message is `text`."""
    return prompt_print(prompt_text(user(text)))
