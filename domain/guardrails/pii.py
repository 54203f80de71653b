"""Personal data in text: e-mail addresses, phone numbers, payment cards, IBANs, US social security numbers and IP
addresses, each found by shape and, where the format has one, by its checksum (Luhn for cards, mod-97 for IBANs).

A checksum is what keeps order numbers, invoice ids and tracking codes out: a mistyped or made-up card number is
not a card. Where two kinds claim the same characters the stricter shape wins (an IBAN's digits are not a phone
number), so every character is reported once.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Collection, Iterator

from schemas.decisions import Finding
from schemas.policies import PiiKind

Span = tuple[int, int]

_DIGIT = re.compile(r"\d")

# ---------------------------------------------------------------------------------------------------- e-mail
_EMAIL = re.compile(
    r"(?<![\w.+'-])\w(?:[\w.%+'-]*[\w%+-])?@(?:\w(?:[\w-]*\w)?\.)+[A-Za-z]{2,}(?![\w-])",
)


def _emails(text: str) -> Iterator[Span]:
    if "@" not in text:
        return
    for match in _EMAIL.finditer(text):
        yield match.span()


# ---------------------------------------------------------------------------------------------------- cards
# Digits in groups separated by one space or dash; the groups are then tried as a whole and, failing the
# checksum, as runs of whole groups (a card followed by its expiry year, an order number before it).
_CARD = re.compile(r"(?<![\w.,-])\d+(?:[ -]\d+)*(?![\w-]|[.,]\d)")
_GROUP = re.compile(r"\d+")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a card number (`digits` holds digits only)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_number(digits: str) -> bool:
    # One repeated digit ("0000 0000 0000 0000") passes Luhn but is a placeholder, never a card.
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


def _card_layout(sizes: list[int]) -> bool:
    """How cards are written (ISO/IEC 7812 embossing): unbroken, in fours (the last group may be shorter), or
    4-6-5 / 4-6-4 (Amex, Diners)."""
    if len(sizes) == 1 or sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(size == 4 for size in sizes[:-1]) and 1 <= sizes[-1] <= 4


_CARD_LEADS = frozenset({4, *range(13, 20)})
"""A card's first group: four digits, or the whole number unbroken."""

_IBAN_HEAD = re.compile(r"[A-Za-z]{2}\d{2} ?$")


def _cards(text: str) -> Iterator[Span]:
    for match in _CARD.finditer(text):
        if _IBAN_HEAD.search(text, max(0, match.start() - 5), match.start()):
            continue  # the digits of an IBAN-shaped number (an invalid IBAN is not a card either)
        groups = [(g.start() + match.start(), g.end() + match.start()) for g in _GROUP.finditer(match.group())]
        if sum(end - start for start, end in groups) >= 13:
            yield from _card_runs(text, groups)


def _card_runs(text: str, groups: list[Span]) -> Iterator[Span]:
    """The longest runs of whole groups that are card numbers, left to right, without overlaps: a card followed
    by its expiry year, or an order number before it, is still found. A run holds at most 19 digits, which keeps
    a long list of numbers linear."""
    first = 0
    while first < len(groups):
        if groups[first][1] - groups[first][0] not in _CARD_LEADS:
            first += 1  # no layout of a card starts with a group of this size
            continue
        sizes: list[int] = []
        for start, end in groups[first : first + 19]:
            if sum(sizes) + end - start > 19:
                break
            sizes.append(end - start)
        taken = 0
        for count in range(len(sizes), 0, -1):
            if sum(sizes[:count]) < 13:
                break
            run = groups[first : first + count]
            if _card_layout(sizes[:count]) and _card_number("".join(text[start:end] for start, end in run)):
                yield run[0][0], run[-1][1]
                taken = count
                break
        first += taken or 1


# ---------------------------------------------------------------------------------------------------- IBAN
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
"""Each country's IBAN length (SWIFT's IBAN registry): it says where an IBAN written in groups ends."""

_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})\d{2}(?= ?[A-Za-z0-9])")


def iban_valid(compact: str) -> bool:
    """The mod-97 check of an IBAN without spaces (ISO 13616): the country code and check digits moved to the
    end, letters as 10..35, the number modulo 97 is 1."""
    rearranged = compact[4:] + compact[:4]
    if not rearranged.isascii() or not rearranged.isalnum():
        return False
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _ibans(text: str) -> Iterator[Span]:
    for match in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(match.group(1).upper())
        if length is None:
            continue
        start = index = match.start()
        chars: list[str] = []
        while index < len(text) and len(chars) < length:
            char = text[index]
            if char.isascii() and char.isalnum():
                chars.append(char)
            elif not (char == " " and index > start and text[index - 1] != " "):
                break
            index += 1
        if len(chars) != length or (index < len(text) and text[index].isalnum()):
            continue
        if iban_valid("".join(chars).upper()):
            yield start, index


# ---------------------------------------------------------------------------------------------------- SSN
# Areas 000, 666 and 900-999, group 00 and serial 0000 are never issued.
def _ssn(separator: str) -> str:
    return rf"(?!000|666|9\d\d)\d{{3}}{separator}(?!00)\d{{2}}{separator}(?!0000)\d{{4}}"


_SSN_DASHED = re.compile(r"(?<![\w-])" + _ssn("-") + r"(?![\w-])")
# Without dashes nine digits are anything; with the words that name them they are an SSN.
_SSN_NAMED = re.compile(
    r"(?i:\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?)\b)[^\d\n]{0,20}?"
    r"(?<!\d)(" + _ssn(" ?") + r")(?![\w-])"
)


def _ssns(text: str) -> Iterator[Span]:
    for match in _SSN_DASHED.finditer(text):
        yield match.span()
    for match in _SSN_NAMED.finditer(text):
        yield match.span(1)


# ---------------------------------------------------------------------------------------------------- IP
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")


def _ips(text: str) -> Iterator[Span]:
    for match in _IPV4.finditer(text):
        yield match.span()
    if "::" not in text and text.count(":") < 7:
        return
    for match in _IPV6.finditer(text):
        address = match.group().partition("%")[0]
        # A full address has eight groups; a shorter one must compress with "::" (times and MAC addresses have
        # neither). At least one digit keeps `a::b`-like code out.
        if "::" not in address and address.count(":") != 7:
            continue
        if not any(char.isdigit() for char in address):
            continue
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            continue
        yield match.span()


# ---------------------------------------------------------------------------------------------------- phone
_PHONE = re.compile(r"(?<![\w+@/#$€£=.:-])(?:\+|00)?\(?\d[\d ().-]{4,24}\d(?![\w@%]|[.-]\d)")
_INTERNATIONAL = re.compile(r"\+|00(?=[1-9])")
"""A country code follows: `+44`, or `0044` where 00 dials out (0000… is not a number)."""
_TRUNK_ZERO = re.compile(r"\(0\)\s?")
_SEPARATOR = re.compile(r"[ ().-]+")
_PHONE_WORDS = re.compile(
    r"(?i:\b(?:phone|tel|telephone|call|mobile|cell|whatsapp|fax|sms|text|ring|contact|number|nummer|numéro|número"
    r"|telefon|teléfono|móvil|celular|handy)\b)[^\d\n]{0,15}$"
)
_DATE_SHAPES = {(4, 2, 2), (4, 1, 2), (4, 2, 1), (4, 1, 1), (2, 2, 4), (1, 2, 4), (2, 1, 4), (1, 1, 4), (2, 2, 2)}


def _phone_number(candidate: str, before: str) -> bool:
    prefix = _INTERNATIONAL.match(candidate)
    international = prefix is not None
    body = _TRUNK_ZERO.sub("", candidate[prefix.end() :]) if prefix is not None else candidate
    groups = [group for group in _SEPARATOR.split(body) if group]
    separators = set(_SEPARATOR.findall(body.strip("()")))
    digits = sum(len(group) for group in groups)
    if any(not group.isdigit() for group in groups) or body.count("(") != body.count(")"):
        return False
    if "\n" in candidate or any(len(separator) > 2 for separator in separators):
        return False
    if international:
        return 8 <= digits <= 15
    if not 7 <= digits <= 12:
        return False
    shape = tuple(len(group) for group in groups)
    if len(groups) == 1:
        # An unformatted run is an id or an amount unless the text calls it a number to dial.
        return 10 <= digits <= 11 and _PHONE_WORDS.search(before) is not None
    dots = {separator.strip() for separator in separators} == {"."}
    if dots:
        # Dotted numbers are US style (415.555.0171); other dotted runs are versions, amounts or addresses.
        return shape == (3, 3, 4)
    if len(groups) == 3 and shape in _DATE_SHAPES and "(" not in body and "-" in "".join(separators):
        return False
    if shape == (3, 2, 4) and "-" in "".join(separators):
        return False  # the SSN layout: a valid one is an SSN, an invalid one is nothing
    if any(len(group) == 1 for group in groups[1:]):
        return False  # ISBNs and part numbers have one-digit groups; dialled numbers only lead with one
    # National numbers end in a group of three or more digits, or are written in pairs (01 23 45 67 89).
    return shape[-1] >= 3 or len(groups) >= 4


def _phones(text: str) -> Iterator[Span]:
    for match in _PHONE.finditer(text):
        start, end = match.span()
        candidate = match.group()
        if candidate.startswith("(") and ")" not in candidate:
            candidate, start = candidate[1:], start + 1  # the sentence's parenthesis, not an area code's
        if _IBAN_HEAD.search(text, max(0, start - 5), start):
            continue  # the digits of an IBAN-shaped number
        if _phone_number(candidate, text[max(0, start - 40) : start]):
            yield start, end


# ---------------------------------------------------------------------------------------------------- all
_DETECTORS: tuple[tuple[PiiKind, Callable[[str], Iterator[Span]], bool], ...] = (
    # Stricter shapes first: a span taken by one kind is not reported again by a later one.
    ("email", _emails, False),
    ("iban", _ibans, True),
    ("card", _cards, True),
    ("ssn", _ssns, True),
    ("ip", _ips, True),
    ("phone", _phones, True),
)


def find_pii(text: str, kinds: Collection[PiiKind]) -> list[Finding]:
    """The personal data of `kinds` in `text`, in text order; offsets index `text`."""
    wanted = [index for index, (kind, _, _) in enumerate(_DETECTORS) if kind in kinds]
    if not wanted:
        return []
    has_digits = _DIGIT.search(text) is not None
    taken = _Taken()
    findings: list[Finding] = []
    # Detectors after the last kind asked for cannot change the answer; those before it still run, because a
    # kind not asked for claims its characters too (the digits of an IBAN are never a phone number).
    for kind, detector, needs_digits in _DETECTORS[: wanted[-1] + 1]:
        if needs_digits and not has_digits:
            continue
        for start, end in detector(text):
            if taken.claim(start, end) and kind in kinds:
                findings.append(Finding(kind=kind, start=start, end=end))
    findings.sort(key=lambda finding: finding.start)
    return findings


class _Taken:
    """Spans already claimed, kept sorted and disjoint, so a text with thousands of numbers stays linear-ish."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def claim(self, start: int, end: int) -> bool:
        """Claim [start, end) unless it overlaps a span already claimed."""
        index = bisect.bisect_right(self.starts, start)
        if index > 0 and self.ends[index - 1] > start:
            return False
        if index < len(self.starts) and self.starts[index] < end:
            return False
        self.starts.insert(index, start)
        self.ends.insert(index, end)
        return True
