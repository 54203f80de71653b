"""How well the guardrails' detectors do on a labelled prompt set (`bench/guard_data/prompts.jsonl`).

Each line is `{"text", "pii": [kinds present], "injection": bool}`. PII is judged per text and kind: a kind found
in a text labelled with it is a true positive, a kind found in a text not labelled with it a false positive
(invalid card numbers and IBANs are labelled as nothing, so finding one is a false positive). Injection is judged
per text at the policy's default threshold (0.8), and at the threshold with the best F1 on this set.

    python -m bench.guard_detectors [path]     # prints the report as JSON
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain.guardrails.injection import score_injection
from domain.guardrails.pii import find_pii
from domain.guardrails.secrets import find_secrets
from schemas.policies import PII_KINDS

DEFAULT_PATH = Path(__file__).parent / "guard_data" / "prompts.jsonl"
INJECTION_THRESHOLD = 0.8
"""The policy's default (`schemas.policies.InjectionRule.threshold`)."""


@dataclass(frozen=True)
class Labelled:
    text: str
    pii: frozenset[str]
    injection: bool


def load(path: Path) -> list[Labelled]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append(Labelled(row["text"], frozenset(row["pii"]), bool(row["injection"])))
    return rows


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _confusion(predicted: list[bool], actual: list[bool]) -> dict[str, Any]:
    tp = sum(p and a for p, a in zip(predicted, actual, strict=True))
    fp = sum(p and not a for p, a in zip(predicted, actual, strict=True))
    fn = sum(a and not p for p, a in zip(predicted, actual, strict=True))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = round(2 * precision * recall / (precision + recall), 4) if precision and recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def pii_report(rows: list[Labelled]) -> dict[str, Any]:
    found = [frozenset(f.kind for f in find_pii(row.text, PII_KINDS)) for row in rows]
    per_kind: dict[str, Any] = {}
    for kind in PII_KINDS:
        per_kind[kind] = _confusion([kind in f for f in found], [kind in row.pii for row in rows])
        per_kind[kind]["labelled"] = sum(kind in row.pii for row in rows)
    tp = sum(len(f & row.pii) for f, row in zip(found, rows, strict=True))
    fp = sum(len(f - row.pii) for f, row in zip(found, rows, strict=True))
    fn = sum(len(row.pii - f) for f, row in zip(found, rows, strict=True))
    misses = [
        {"text": row.text, "missed": sorted(row.pii - f)} for f, row in zip(found, rows, strict=True) if row.pii - f
    ]
    false_alarms = [
        {"text": row.text, "found": sorted(f - row.pii)} for f, row in zip(found, rows, strict=True) if f - row.pii
    ]
    return {
        "per_kind": per_kind,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "misses": misses,
        "false_alarms": false_alarms,
    }


def injection_report(rows: list[Labelled]) -> dict[str, Any]:
    scores = [score_injection(row.text).score for row in rows]
    actual = [row.injection for row in rows]
    at_default = _confusion([s >= INJECTION_THRESHOLD for s in scores], actual)
    best_threshold, best = INJECTION_THRESHOLD, at_default
    for threshold in sorted({s for s in scores if s > 0}):
        candidate = _confusion([s >= threshold for s in scores], actual)
        if candidate["f1"] > best["f1"]:
            best_threshold, best = threshold, candidate
    return {
        "threshold": INJECTION_THRESHOLD,
        **at_default,
        "best_threshold": best_threshold,
        "best": best,
        "misses": [{"text": r.text, "score": s} for r, s in zip(rows, scores, strict=True) if r.injection and s < 0.8],
        "false_alarms": [
            {"text": r.text, "score": s} for r, s in zip(rows, scores, strict=True) if not r.injection and s >= 0.8
        ],
    }


def timing_report(rows: list[Labelled], *, rounds: int = 20) -> dict[str, float]:
    """Mean microseconds per text of each detector over the set (what a prompt of this set costs)."""
    plain = [row.text for row in rows if not row.pii and not row.injection]
    runs = {
        "pii_us": (lambda text: find_pii(text, PII_KINDS), [row.text for row in rows]),
        "secrets_us": (find_secrets, [row.text for row in rows]),
        "injection_us": (score_injection, [row.text for row in rows]),
        "injection_plain_prompt_us": (score_injection, plain),
    }
    report = {}
    for name, (detector, texts) in runs.items():
        started = time.perf_counter()
        for _ in range(rounds):
            for text in texts:
                detector(text)
        report[name] = round((time.perf_counter() - started) / (rounds * len(texts)) * 1e6, 2)
    return report


def detector_report(path: Path | str = DEFAULT_PATH) -> dict[str, Any]:
    """Injection precision and recall (at 0.8 and the best threshold), PII recall per kind and precision, and the
    detectors' cost per text, on the labelled set at `path`."""
    rows = load(Path(path))
    return {
        "texts": len(rows),
        "injection": injection_report(rows),
        "pii": pii_report(rows),
        "timing": timing_report(rows),
    }


if __name__ == "__main__":
    print(json.dumps(detector_report(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH), indent=2, ensure_ascii=False))
