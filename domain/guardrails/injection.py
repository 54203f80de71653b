"""Prompt injection: text that tries to override the instructions a model was given, or to make it leak them.

Weighted patterns, each a known shape of attack: instruction overrides ("ignore all previous instructions"),
jailbreak personas and modes ("you are now DAN", "developer mode", "no restrictions") and exfiltration ("print
your system prompt", "send the conversation to http…", markdown images whose URL carries data). A text's score
is 1 - ∏(1 - w) over the distinct patterns it matches, so one strong signal or several weak ones reach a
threshold, and a single weak one ("act as", "you are now") never does on its own.

Each pattern names the words one of which every match contains; the text's words are collected once and only the
patterns whose words appear run, so a plain prompt costs a few microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.decisions import Finding

InjectionKind = str
"""`instruction_override`, `jailbreak` or `exfiltration`."""


@dataclass(frozen=True)
class Pattern:
    kind: InjectionKind
    weight: float
    """How sure one match makes us (0..1)."""
    regex: re.Pattern[str]
    """Run on the text in lower case (a case-sensitive pattern: on the text as written)."""
    any_case: re.Pattern[str]
    """The same, ignoring case: for the rare text whose lower case has another length (offsets would shift)."""
    words: frozenset[str]
    """Every match contains one of these words (lower case): without any of them the pattern is not run."""
    marks: tuple[str, ...]
    """Or one of these strings (lower case), for patterns anchored on punctuation (`![`, `http`, `<`)."""
    case: bool


@dataclass(frozen=True)
class InjectionScore:
    score: float
    findings: list[Finding]


def _p(
    kind: InjectionKind, weight: float, pattern: str, words: str, *, marks: tuple[str, ...] = (), case: bool = False
) -> Pattern:
    # Matching lower-cased text with a lower-case pattern is 2-4x faster than IGNORECASE in `re`.
    any_case = re.compile(pattern, 0 if case else re.IGNORECASE)
    return Pattern(kind, weight, re.compile(pattern), any_case, frozenset(words.split()), marks, case)


_PRIOR = r"(?:previous|prior|preceding|above|earlier|former|initial|original|old|existing|current|system|developer)"
_RULES = (
    r"(?:instructions?|directions?|directives?|prompts?|rules|guidelines|guidance|programming|commands?|orders"
    r"|constraints|polic(?:y|ies)|system\s+(?:prompt|message)|context)"
)
_DET = r"(?:(?:all|any|every|the|your|these|those|of|my|its)\s+){0,3}"
_REVEAL = (
    r"(?:reveal|print|show|output|display|repeat|dump|leak|tell\s+me|give\s+me|share|disclose|expose|write\s+out"
    r"|list|translate|encode|spell\s+out|recite|paste|return)"
)
_SENSITIVE = (
    r"(?:conversation|chat(?:\s+history)?|history|(?:previous|prior|all|hidden)\s+messages|context|system\s+prompt"
    r"|instructions|secrets?|passwords?|credentials|api\s+keys?|env(?:ironment)?\s+var(?:iable)?s|inbox|e-?mails"
    r"|calendar|cookies|tokens?|user(?:'s)?\s+data|personal\s+data)"
)

PATTERNS: tuple[Pattern, ...] = (
    # ---- instruction override
    _p(
        "instruction_override",
        0.9,
        rf"\b(?:ignore|disregard|forget|skip|override|overlook|bypass|abandon|discard|neglect|drop)\b\s+{_DET}"
        rf"(?:{_PRIOR}\s+|(?:rules|instructions)\s+)?(?:\w+\s+)?{_RULES}\b",
        "ignore disregard forget skip override overlook bypass abandon discard neglect drop",
    ),
    _p(
        "instruction_override",
        0.85,
        r"\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+|anything\s+)?(?:of\s+)?(?:the\s+|that\s+)?"
        r"(?:above|(?:said|written)\s+(?:above|before)|you\s+(?:were|have\s+been)\s+told(?:\s+before)?)\b"
        # "the above" standing for what came before, not "the above error" (a noun after it: the first pattern)
        r"(?!\s+(?!and\b|instead\b|then\b|but\b|or\b)\w)",
        "ignore disregard forget",
    ),
    _p(
        "instruction_override",
        0.85,
        r"\b(?:stop|don'?t|do\s+not|no\s+longer|never)\s+(?:follow(?:ing)?|obey(?:ing)?|listen(?:ing)?\s+to"
        rf"|adher(?:e|ing)\s+to|comply(?:ing)?\s+with)\s+{_DET}(?:{_PRIOR}\s+)?{_RULES}\b",
        "follow following obey obeying listen listening adhere adhering comply complying",
    ),
    _p(
        "instruction_override",
        0.85,
        rf"\b{_RULES}\b[^.!?\n]{{0,30}}?\b(?:are|were|is|was)\s+(?:now\s+|just\s+)?(?:obsolete|revoked|void|cancel+ed"
        r"|invalid|a\s+mistake|wrong|fake|a\s+test|no\s+longer\s+(?:valid|in\s+effect|apply|applicable))",
        "obsolete revoked void canceled cancelled invalid mistake wrong fake test longer",
    ),
    _p(
        "instruction_override",
        0.8,
        r"\b(?:updat|chang|overrid|replac|modif|rewrit|reset)\w*\s+(?:your|the\s+(?:system|assistant'?s?))\s+"
        r"(?:instructions|rules|guidelines|programming|system\s+prompt|prompt|directives|configuration)",
        "instructions rules guidelines programming prompt directives configuration",
    ),
    _p(
        "instruction_override",
        0.6,
        r"\b(?:new|updated|real|actual|true)\s+(?:instructions?|rules|task|purpose|policy|system\s+prompt|directive)"
        r"\s*(?::|=|is\b|are\b)",
        "instruction instructions rules task purpose policy prompt directive",
    ),
    _p(
        "instruction_override",
        0.45,
        r"\byour\s+(?:only\s+|new\s+|real\s+)+(?:task|purpose|job|goal|role|objective|mission)\b",
        "task purpose job goal role objective mission",
    ),
    _p(
        "instruction_override",
        0.5,
        r"</?\s*(?:system|assistant|user|instructions?)\s*>|<\|im_(?:start|end)\|>|\[/?inst\]|^\s*#{1,6}\s*system\b"
        r"|\b(?:system|admin(?:istrator)?)\s+(?:override|note|message)\b|\bsystem\s*:",
        "system admin administrator",
        marks=("<", "inst]"),
    ),
    _p(
        "instruction_override",
        0.55,
        r"\b(?:note|message|instructions?|important)\s+(?:to|for)\s+(?:the\s+|any\s+)?(?:ai|llm|language\s+models?"
        r"|chatbots?|assistants?|ai\s+(?:assistants?|models?|reviewers?))\b|\b(?:if\s+you\s+are\s+an?\s+(?:ai|llm"
        r"|language\s+model|assistant))\b|\b(?:dear|hey|attention)\s+(?:ai|llm|assistant|chatbot|ai\s+model)\b"
        r"|[\[(]\s*(?:ai|assistant)\s*:",
        "ai llm language chatbot chatbots assistant assistants",
    ),
    _p(
        "instruction_override",
        0.9,
        r"\b(?:ignorez|ignore[sz]?)\s+(?:toutes\s+)?(?:les\s+)?instructions\s+pr[ée]c[ée]dentes"
        r"|\bignora\s+(?:todas\s+)?(?:las\s+)?instrucciones\s+anteriores"
        r"|\bignorier(?:e|en)\s+(?:sie\s+)?(?:alle\s+)?(?:vorherigen|bisherigen|obigen)\s+(?:anweisungen|instruktionen)"
        r"|\bignora\s+(?:tutte\s+)?(?:le\s+)?istruzioni\s+precedenti"
        r"|\bignore\s+(?:todas\s+)?(?:as\s+)?instru[çc][õo]es\s+anteriores",
        "ignorez ignore ignores ignora ignoriere ignorieren",
    ),
    _p(
        "instruction_override",
        0.35,
        r"\b(?:i\s+am|i'm|this\s+is)\s+(?:your|the|an?)\s+(?:developer|creator|admin(?:istrator)?|owner|operator"
        r"|openai|anthropic)\b|\bauthori[sz]ed\s+(?:by|red\s+team|penetration|test)",
        "developer creator admin administrator owner operator openai anthropic authorized authorised",
    ),
    # ---- jailbreak: personas, modes, no restrictions
    _p(
        "jailbreak",
        0.7,
        r"\b(?:enable|activate|enter|entering|switch(?:ing)?\s+(?:to|into)|turn\s+on|now\s+in|begin|start)\s+"
        r"(?:the\s+)?(?:admin|god|developer|dev|debug|maintenance|sudo|root|jailbreak|jailbroken|unrestricted|dan"
        r"|unfiltered|evil)\s+mode\b|\b(?:developer|god|jailbreak|dan|admin)\s+mode\s+(?:enabled|on|activated)\b",
        "mode",
    ),
    _p(
        "jailbreak",
        0.6,
        r"\b(?:no|without|free\s+(?:of|from)|broken\s+free\s+of|not\s+bound\s+by|(?:doesn'?t|does\s+not|don'?t|do\s+not"
        r"|never)\s+(?:abide\s+by|follow|have)|ignore|bypass|override|disable|remove|lift)\s+(?:any\s+|all\s+|the\s+"
        r"|your\s+|its\s+|typical\s+|content\s+|ethical\s+|moral\s+|safety\s+|of\s+)*(?:restrictions?|filters?|guidelines"
        r"|rules|limits|limitations|censorship|content\s+polic(?:y|ies)|safeguards?|confines|ethics|morals?"
        r"|safety\s+(?:filters?|guidelines|instructions)|refusals?|warnings|boundaries)\b",
        "restriction restrictions filter filters guidelines rules limits limitations censorship policy policies"
        " safeguard safeguards confines ethics moral morals instructions refusal refusals warnings boundaries",
    ),
    _p(
        "jailbreak",
        0.6,
        r"\b(?:unrestricted|unfiltered|uncensored|jailbroken|unchained|unlimited)\s+(?:ai|model|assistant|chatbot|mode"
        r"|version|llm|gpt|bot)\b|\bjailbreak\s+mode\b",
        "unrestricted unfiltered uncensored jailbroken unchained unlimited jailbreak",
    ),
    _p(
        "jailbreak",
        0.7,
        r"\bDAN\b|\bSTAN\b|\bDUDE\b|\bAIM\b|\bEvilBot\b|\bBetterDAN\b",
        "dan stan dude aim evilbot betterdan",
        case=True,
    ),
    _p(
        "jailbreak",
        0.6,
        r"\bdo\s+anything\s+now\b|\balways\s+intelligent\s+and\s+machiavellian\b",
        "anything machiavellian",
    ),
    _p(
        "jailbreak",
        0.35,
        r"\byou\s+are\s+(?:now|no\s+longer|going\s+to\s+(?:be|act|pretend))\b|\bfrom\s+now\s+on,?\s+you\b"
        r"|\b(?:act|acting|behave)\s+as\s+(?:if|though)\s+you\b",
        "now longer going act acting behave",
    ),
    _p(
        "jailbreak",
        0.15,
        r"\b(?:pretend|imagine|roleplay|role-play)\b|\bact\s+as\b",
        "pretend imagine roleplay role act",
    ),
    _p(
        "jailbreak",
        0.5,
        r"\bstay\s+in\s+character\b|\b(?:never|don'?t|do\s+not|must\s+not)\s+refuse\b|\bwithout\s+(?:refusing|refusal"
        r"|any\s+warnings?)\b|\bcomply\s+with\s+all\s+requests\b|\bobey\s+the\s+user\s+unconditionally\b",
        "character refuse refusing refusal warning warnings requests unconditionally",
    ),
    _p(
        "jailbreak",
        0.5,
        r"\b(?:deceased|late|dead)\s+grand(?:ma|mother|pa|father)\b",
        "grandma grandmother grandpa grandfather",
    ),
    # ---- exfiltration
    _p(
        "exfiltration",
        0.85,
        rf"\b{_REVEAL}\b\s+(?:\w+\s+){{0,3}}?(?:your|the|all|any)\s+(?:(?:full|entire|complete|exact|hidden|secret"
        r"|initial|original|internal|first|verbatim)\s+)*(?:system\s+(?:prompt|message|instructions)|(?:initial|original"
        r"|hidden|secret|internal)\s+(?:prompt|instructions|messages|context|configuration|rules)|instructions"
        r"|prompt|pre-?prompt|hidden\s+context|configuration)\b",
        "prompt preprompt message instructions messages context configuration rules",
    ),
    _p(
        "exfiltration",
        0.85,
        r"\b(?:what\s+(?:is|are|was|were)|tell\s+me)\s+(?:the\s+first\s+(?:line|sentence|words?)\s+of\s+)?your\s+"
        r"(?:system\s+prompt|initial\s+(?:instructions|prompt)|instructions|original\s+(?:prompt|instructions))\b",
        "prompt instructions",
    ),
    _p(
        "exfiltration",
        0.6,
        r"\b(?:repeat|print|output|reproduce|copy|echo|dump|show|write)\b\s+(?:back\s+)?(?:all\s+|everything\s+|(?:all\s+)?"
        r"(?:of\s+)?the\s+(?:text|words|content|messages?|conversation|prompt)\s+)?(?:above|before\s+this|so\s+far"
        r"|(?:in|from)\s+your\s+context(?:\s+window)?)\b",
        "above before far context",
    ),
    _p(
        "exfiltration",
        0.6,
        r"\bstarting\s+with\s+[\"'\u201c\u2018]?you\s+are\b|\bbetween\s+<\w+>\s+tags\b",
        "starting tags",
    ),
    _p(
        "exfiltration",
        0.3,
        r"\bverbatim\b|\bword\s+for\s+word\b|\bincluding\s+(?:your\s+)?(?:hidden|system)\b",
        "verbatim word including",
    ),
    _p(
        "exfiltration",
        0.5,
        r"\b(?:hidden|system|prior|previous)\s+(?:messages|instructions|context)\b",
        "messages instructions context",
    ),
    _p(
        "exfiltration",
        0.85,
        rf"\b(?:send|post|forward|upload|transmit|exfiltrate|leak|submit)\b\s+(?:\w+\s+){{0,3}}?{_SENSITIVE}\b"
        r"[^.\n]{0,60}?(?:https?://|\bto\s+[\w.+-]+@)|\b" + _SENSITIVE + r"\b[^.\n]{0,60}?\b(?:send|post|forward"
        r"|upload|transmit)\b[^.\n]{0,30}?https?://",
        "",
        marks=("http", "@"),
    ),
    _p(
        "exfiltration",
        0.45,
        r"\b(?:send|post|forward|upload|transmit|exfiltrate)\b[^.\n]{0,80}?https?://",
        "",
        marks=("http",),
    ),
    _p(
        "exfiltration",
        0.85,
        r"!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s]*\?[^)\s]*(?:=\)|=\s*$|\{[^}\s]*\}|=[A-Z_]{6,}|=\[)",
        "",
        marks=("![",),
        case=True,  # an upper-case placeholder (`=SUMMARY_OF_CHAT`) is what it looks for
    ),
    _p("exfiltration", 0.5, r"!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s]*\?[^)\s]*=", "", marks=("![",)),
    _p(
        "exfiltration",
        0.5,
        r"https?://[^\s)\"']*\?[^\s)\"']*=(?=[\s)\"']|$)|https?://[^\s)\"']*\{[^}\s]*\}",
        "",
        marks=("http",),
    ),
)
_WORDS = re.compile(r"[a-z]+")
_BY_WORD: dict[str, list[int]] = {}
"""Word -> the patterns (indexes into PATTERNS) that may match where it appears."""
for _index, _pattern in enumerate(PATTERNS):
    for _word in _pattern.words:
        _BY_WORD.setdefault(_word, []).append(_index)
_BY_MARK = [(mark, index) for index, pattern in enumerate(PATTERNS) for mark in pattern.marks]


def score_injection(text: str) -> InjectionScore:
    """The injection score of `text` (0..1) and where each matching pattern matched."""
    lowered = text.lower()
    candidates: set[int] = set()
    for word in _WORDS.findall(lowered):
        found = _BY_WORD.get(word)
        if found is not None:
            candidates.update(found)
    candidates.update(index for mark, index in _BY_MARK if mark in lowered)
    if not candidates:
        return InjectionScore(0.0, [])
    return _score(text, lowered, [PATTERNS[index] for index in sorted(candidates)])


def score_patterns(text: str) -> InjectionScore:
    """`score_injection` running every pattern (its test proves the anchor words change nothing)."""
    return _score(text, text.lower(), PATTERNS)


def _score(text: str, lowered: str, patterns: Sequence[Pattern]) -> InjectionScore:
    keep = 1.0
    findings: list[Finding] = []
    same_offsets = len(lowered) == len(text)
    for pattern in patterns:
        if pattern.case:
            found = pattern.regex.finditer(text)
        elif same_offsets:
            found = pattern.regex.finditer(lowered)
        else:
            found = pattern.any_case.finditer(text)
        matches = [match for match in found if match.end() > match.start()]
        if not matches:
            continue
        keep *= 1.0 - pattern.weight
        findings.extend(Finding(kind=pattern.kind, start=match.start(), end=match.end()) for match in matches)
    findings.sort(key=lambda finding: (finding.start, finding.end))
    return InjectionScore(round(1.0 - keep, 6), findings)
