"""domain/similarity.py: normalisation, prints, LSH bands and the similarity estimate."""

from __future__ import annotations

import pytest

from domain.similarity import BANDS, NUM_PERM, prompt_print, prompt_text, similarity
from schemas.messages import ChatMessage
from tests.support.prompts import PROMPT, UNRELATED, user


def test_text_is_case_whitespace_and_unicode_insensitive() -> None:
    plain = prompt_text(user("Hello World, how are you?"))
    assert prompt_text(user("  HELLO\tworld,\n\nhow   are you?  ")) == plain
    # NFKC: the full-width letters and the non-breaking space are the ASCII ones.
    assert prompt_text(user("\uff28\uff45\uff4c\uff4c\uff4f\u00a0World, how are you?")) == plain
    assert plain == "user: hello world, how are you?"


def test_text_is_role_tagged() -> None:
    assert prompt_text([ChatMessage(role="system", content="X")]) != prompt_text(user("X"))
    two = prompt_text([ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")])
    assert two == "system: be brief.\nuser: hi"


def test_text_takes_the_text_of_parts_and_tool_calls_but_no_binary() -> None:
    message = ChatMessage.model_validate(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"filename": "Notes.pdf", "file_data": "JVBERi0="}},
            ],
        }
    )
    assert prompt_text([message]) == "user: what is in https://example.com/cat.png notes.pdf"

    call = ChatMessage.model_validate(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}],
        }
    )
    same_call_new_id = call.model_copy(deep=True)
    assert same_call_new_id.tool_calls is not None
    same_call_new_id.tool_calls[0].id = "call_2"
    assert prompt_text([call]) == 'assistant: get_weather({"city": "oslo"})'
    assert prompt_text([same_call_new_id]) == prompt_text([call])


def test_identical_texts_give_identical_prints() -> None:
    first, second = prompt_print(prompt_text(user(PROMPT))), prompt_print(prompt_text(user(PROMPT)))
    assert first == second
    assert len(first.exact_hash) == 64
    assert len(first.signature) == NUM_PERM
    assert len(first.bands) == BANDS
    assert len(set(first.bands)) == BANDS
    assert all(len(band) <= 64 for band in first.bands)
    assert similarity(first.signature, second.signature) == 1.0


def test_a_one_word_change_is_a_near_duplicate_sharing_a_band() -> None:
    original = prompt_print(prompt_text(user(PROMPT)))
    edited = prompt_print(prompt_text(user(PROMPT.replace("Europe", "Asia"))))

    assert edited.exact_hash != original.exact_hash
    assert similarity(original.signature, edited.signature) >= 0.9
    assert set(original.bands) & set(edited.bands)


def test_an_unrelated_prompt_scores_low_and_shares_no_band() -> None:
    original = prompt_print(prompt_text(user(PROMPT)))
    other = prompt_print(prompt_text(user(UNRELATED)))

    assert similarity(original.signature, other.signature) < 0.2
    assert not set(original.bands) & set(other.bands)


def test_similarity_bounds() -> None:
    signature = prompt_print("user: some prompt").signature
    disjoint = tuple(value + 1 for value in signature)
    assert similarity(signature, signature) == 1.0
    assert similarity(signature, disjoint) == 0.0
    assert 0.0 <= similarity(signature, prompt_print("user: another prompt").signature) <= 1.0
    # Not comparable: empty, or from another number of permutations.
    assert similarity((), ()) == 0.0
    assert similarity(signature, signature[:64]) == 0.0


@pytest.mark.parametrize("text", ["a", "user:"])
def test_texts_shorter_than_a_shingle_still_get_a_full_print(text: str) -> None:
    printed = prompt_print(text)
    assert not printed.empty
    assert len(printed.signature) == NUM_PERM
    assert len(printed.bands) == BANDS
    assert prompt_print(text) == printed
    assert similarity(printed.signature, prompt_print(text + "b").signature) < 1.0


def test_empty_prompt_has_no_signature_or_bands() -> None:
    printed = prompt_print(prompt_text([]))
    assert printed.empty
    assert printed.signature == ()
    assert printed.bands == ()
