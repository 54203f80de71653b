"""Personal data detection: checksums decide cards and IBANs, layouts decide phones, offsets point at the data."""

from __future__ import annotations

import time

import pytest

from bench.guard_detectors import DEFAULT_PATH, load, pii_report
from domain.guardrails.pii import find_pii, iban_valid, luhn_valid
from schemas.policies import PII_KINDS


def found(text: str, kinds: tuple[str, ...] = PII_KINDS) -> list[tuple[str, str]]:
    """(kind, the characters its offsets point at) for each finding."""
    return [(f.kind, text[f.start : f.end]) for f in find_pii(text, kinds)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1111", "4242-4242-4242-4242", "5555555555554444", "3782 822463 10005", "6011111111111117"],
)
def test_a_card_that_passes_luhn_is_found_with_its_separators(number: str) -> None:
    assert found(f"my card {number}, exp 09/27") == [("card", number)]


@pytest.mark.parametrize("number", ["4111 1111 1111 1112", "1234 5678 9012 3456", "0000 0000 0000 0000"])
def test_a_number_failing_luhn_or_a_placeholder_is_not_a_card(number: str) -> None:
    assert found(f"reference {number} please", ("card",)) == []


def test_a_card_followed_by_a_year_is_still_found() -> None:
    assert found("card 4111 1111 1111 1111 2027 thanks", ("card",)) == [("card", "4111 1111 1111 1111")]


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


@pytest.mark.parametrize(
    "iban", ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR14 2004 1010 0505 0001 3M02 606"]
)
def test_an_iban_with_a_valid_mod97_checksum_is_found(iban: str) -> None:
    assert found(f"IBAN {iban} BIC ABCDEFGH") == [("iban", iban)]


def test_an_iban_with_wrong_check_digits_is_nothing_not_even_a_phone() -> None:
    assert found("wire to DE88 3704 0044 0532 0130 00 today") == []
    assert not iban_valid("DE88370400440532013000")


@pytest.mark.parametrize("ssn", ["123-45-6789", "078-05-1120", "665-12-3344"])
def test_a_valid_ssn_is_found(ssn: str) -> None:
    assert found(f"SSN {ssn}.") == [("ssn", ssn)]


@pytest.mark.parametrize("ssn", ["000-12-3456", "666-45-1234", "912-34-5678", "123-00-4567", "321-54-0000"])
def test_never_issued_ssns_are_not_found(ssn: str) -> None:
    assert found(f"sample {ssn} here") == []


def test_nine_digits_are_an_ssn_only_when_named() -> None:
    assert found("SSN: 482019375 on file", ("ssn",)) == [("ssn", "482019375")]
    assert found("order 482019375 on file", ("ssn",)) == []


@pytest.mark.parametrize(
    "address",
    ["203.0.113.42", "10.0.0.5", "2001:db8:85a3::8a2e:370:7334", "::1", "2001:0db8:0000:0000:0000:ff00:0042:8329"],
)
def test_ip_addresses_are_found(address: str) -> None:
    assert found(f"reach {address} now", ("ip",)) == [("ip", address)]


@pytest.mark.parametrize(
    "text",
    [
        "Windows build 10.0.19045.3803",
        "is 999.10.10.10 valid?",
        "MAC 00:1A:2B:3C:4D:5E",
        "at 12:30:45 UTC",
        "std::vector<int>::iterator",
    ],
)
def test_versions_times_macs_and_code_are_not_ip_addresses(text: str) -> None:
    assert found(text, ("ip",)) == []


@pytest.mark.parametrize(
    "phone",
    [
        "(415) 555-0132",
        "+1 415 555 0132",
        "+44 20 7946 0958",
        "020 7946 0018",
        "+49 (0)89 2180 3456",
        "01 23 45 67 89",
        "+81 3-1234-5678",
        "415.555.0171",
        "+14155550132",
        "0044 20 7946 0321",
        "555-0147",
    ],
)
def test_phone_numbers_in_international_and_national_formats_are_found(phone: str) -> None:
    assert found(f"call {phone} today", ("phone",)) == [("phone", phone)]


@pytest.mark.parametrize(
    "text",
    [
        "released 2024-03-15",
        "ISBN 978-3-16-148410-0",
        "Order #100234987 placed",
        "timestamp 1700000000",
        "part 22-7351-04",
        "grew to 8,804,190",
        "coordinates 48.8584, 2.2945",
        "placeholder 0000 0000 0000 00",
    ],
)
def test_dates_ids_and_amounts_are_not_phone_numbers(text: str) -> None:
    assert found(text, ("phone",)) == []


def test_an_unformatted_number_is_a_phone_when_the_text_says_so() -> None:
    assert found("phone: 4155550188", ("phone",)) == [("phone", "4155550188")]


@pytest.mark.parametrize("email", ["jane.doe@example.com", "m.schmidt+invoices@firma.de", "LEE.CHEN@UNI.EDU"])
def test_emails_are_found_without_the_punctuation_around_them(email: str) -> None:
    assert found(f"write to <{email}>.") == [("email", email)]


def test_only_the_kinds_asked_for_are_reported() -> None:
    text = "jane@example.com, +1 415 555 0132, card 4111 1111 1111 1111"
    assert found(text, ("phone",)) == [("phone", "+1 415 555 0132")]
    assert [kind for kind, _ in found(text)] == ["email", "phone", "card"]


def test_a_kind_not_asked_for_still_owns_its_characters() -> None:
    # The digits of a card are never reported as a phone number, even when only phones are asked for.
    assert found("pay with 4111-1111-1111-1111", ("phone",)) == []


def test_a_prompt_without_personal_data_finds_nothing() -> None:
    assert find_pii("Explain the CAP theorem with a banking example, in 3 short paragraphs.", PII_KINDS) == []


def test_a_long_list_of_numbers_is_scanned_in_linear_time() -> None:
    # 200k characters of short dashed and spaced groups: every run of groups is a card candidate.
    text = "-".join("12" for _ in range(30_000)) + " " + " ".join(str(1000 + i % 9000) for i in range(20_000))
    started = time.perf_counter()
    find_pii(text, PII_KINDS)
    assert time.perf_counter() - started < 2.0  # ~0.2 s here; quadratic, it took over 10 s


def test_recall_on_the_labelled_set_is_at_least_95_percent_for_every_kind() -> None:
    rows = load(DEFAULT_PATH)
    assert len(rows) >= 300
    report = pii_report(rows)
    for kind in PII_KINDS:
        assert report["per_kind"][kind]["labelled"] >= 25, kind
        assert report["per_kind"][kind]["recall"] >= 0.95, (kind, report["misses"])
    assert report["precision"] >= 0.95, report["false_alarms"]
