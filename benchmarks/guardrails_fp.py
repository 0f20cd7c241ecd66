"""False positives of the guardrails on benign traffic, and recall on known attacks.

    python benchmarks/guardrails_fp.py          # readable summary
    python benchmarks/guardrails_fp.py --json   # one JSON object

Benign traffic: every template of the intent catalogue (``datasets/intents.jsonl``), rendered
`--fills` times each through ``llmlab.catalogue`` with seeded slot values; without the
catalogue, the built-in list of attack look-alikes is used and ``benign_source`` says so.
Attacks: ~40 built-in English and Korean strings (``llmlab.guardrails.evaluation.ATTACKS``).
The attack list was written together with the rules, so its recall is an in-sample number.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import llmlab  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmlab.guardrails import InjectionDetector, PIIMasker  # noqa: E402
from llmlab.guardrails.evaluation import ATTACKS, BENIGN_LOOKALIKES, benign_catalogue_texts, evaluate  # noqa: E402


def run(seed: int = 0, fills: int = 3) -> dict:
    rendered = benign_catalogue_texts(fills_per_template=fills, seed=seed)
    if rendered is None:
        benign, clean, source = list(BENIGN_LOOKALIKES), list(BENIGN_LOOKALIKES), "built-in look-alikes (no catalogue)"
    else:
        (benign, clean), source = rendered, "datasets/intents.jsonl"
    detector, masker = InjectionDetector(), PIIMasker()
    t0 = time.perf_counter()
    result = evaluate(benign, ATTACKS, pii_clean=clean, detector=detector, masker=masker)
    elapsed = time.perf_counter() - t0
    lookalikes = evaluate(list(BENIGN_LOOKALIKES), (), detector=detector, masker=masker)
    scans = len(benign) + len(clean) + len(ATTACKS)
    return {
        "benign_queries": result["benign_queries"],
        "injection_false_positive_rate": round(result["injection_false_positive_rate"], 4),
        "pii_false_positive_rate": round(result["pii_false_positive_rate"], 4),
        "injection_recall_on_attacks": round(result["injection_recall_on_attacks"], 4),
        "attacks": result["attacks"],
        "missed_attacks": result["missed_attacks"],
        "lookalike_queries": lookalikes["benign_queries"],
        "lookalike_injection_false_positive_rate": round(lookalikes["injection_false_positive_rate"], 4),
        "benign_source": source,
        "us_per_scan": round(elapsed / scans * 1e6, 1),
        "injection_false_positives": result["injection_false_positives"],
        "pii_false_positives": result["pii_false_positives"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fills", type=int, default=3, help="renderings per catalogue template")
    args = p.parse_args(argv)
    r = run(args.seed, args.fills)
    if args.json:
        print(json.dumps(r, ensure_ascii=False))
        return 0
    print(f"benign queries ({r['benign_source']}): {r['benign_queries']}")
    print(f"  injection false-positive rate: {r['injection_false_positive_rate']:.2%}")
    print(f"  PII false-positive rate:       {r['pii_false_positive_rate']:.2%}")
    print(f"attack look-alikes: {r['lookalike_queries']}, false positives "
          f"{r['lookalike_injection_false_positive_rate']:.2%}")
    print(f"attacks: {r['attacks']}, recall {r['injection_recall_on_attacks']:.2%} (in-sample)")
    for t in r["missed_attacks"]:
        print(f"  missed: {t}")
    print(f"{r['us_per_scan']} µs per scan")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
