"""Banned terms: case-insensitive, whole words, any whitespace between a phrase's words."""

from __future__ import annotations

from domain.guardrails.terms import find_terms


def found(text: str, terms: list[str]) -> list[str]:
    return [text[f.start : f.end] for f in find_terms(text, terms)]


def test_terms_match_in_any_case_as_whole_words() -> None:
    assert found("Project X's budget and project  x again", ["project x"]) == ["Project X", "project  x"]


def test_a_term_inside_a_longer_word_is_not_found() -> None:
    assert found("the class passed", ["ass"]) == []
    assert found("Project Xavier", ["project x"]) == []


def test_a_line_break_inside_a_phrase_still_matches() -> None:
    assert found("the project\nx plan", ["project x"]) == ["project\nx"]


def test_the_longest_term_wins_where_two_match() -> None:
    assert found("about project x ray results", ["project x", "project x ray"]) == ["project x ray"]


def test_terms_with_punctuation_are_literal() -> None:
    assert found("we use c++ and c#, not c", ["c++", "c#"]) == ["c++", "c#"]
    assert found("a.b is fine", ["a*b"]) == []


def test_no_terms_find_nothing() -> None:
    assert find_terms("anything at all", []) == []
