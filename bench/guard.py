"""`make bench-guard`: the guard's detectors measured offline, printed as JSON and written to
`bench/results/guard.json`.

    python -m bench.guard               # abuse detection (seed 7), and the guardrail detectors when present
    python -m bench.guard --seed 3      # another draw of the abuse traffic

- abuse (`bench.guard_abuse`): seeded traffic of normal and abusive keys over three tenants, a model per tenant
  trained on its unlabelled history, held-out windows scored as preflight scores them; ROC AUC and the false
  and true positive rates at the example policy's thresholds, per scorer and per kind of key.
- detectors (`bench.guard_detectors`, when that module exists): injection and PII detection on a labelled set.

The targets are checked on the score preflight uses (`abuse.scorers.score`): ROC AUC ≥ 0.9 and at most 1 % of
normal windows at or over the block threshold. Exit 0 whatever the figures; non-zero only if the bench breaks.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from bench import guard_abuse

RESULTS = Path(__file__).parent / "results" / "guard.json"
AUC_TARGET = 0.9
FPR_TARGET = 0.01


def targets(abuse: dict[str, Any]) -> list[dict[str, Any]]:
    score = abuse["scorers"]["score"]
    fpr = score[f"fpr_at_{guard_abuse.BLOCK}"]
    return [
        {"target": "abuse ROC AUC", "value": score["roc_auc"], "goal": f">= {AUC_TARGET}",
         "verdict": "PASS" if score["roc_auc"] >= AUC_TARGET else "MISS"},
        {"target": f"abuse false positives at block ({guard_abuse.BLOCK})", "value": fpr, "goal": f"<= {FPR_TARGET}",
         "verdict": "PASS" if fpr <= FPR_TARGET else "MISS"},
    ]  # fmt: skip


def detectors() -> dict[str, Any] | None:
    """`bench.guard_detectors.detector_report()` on its default data set, or None when that module is absent."""
    if importlib.util.find_spec("bench.guard_detectors") is None:
        return None
    module = importlib.import_module("bench.guard_detectors")
    report: dict[str, Any] = module.detector_report()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7, help="seed of the abuse traffic (default 7)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    abuse = guard_abuse.evaluate(args.seed)
    report: dict[str, Any] = {"targets": targets(abuse), "abuse": abuse}
    found = detectors()
    if found is not None:
        report["detectors"] = found
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
