#!/usr/bin/env python3
"""How long does the PII masker take on a long text full of numbers?  Bisection vs a pass per span.

    python benchmarks/pii_overlaps.py --json                 # ≈ 118k characters, ≈ 6,000 detections
    python benchmarks/pii_overlaps.py --repeats 200 --json

``PIIMasker.find`` keeps, kind by kind, the detections that overlap none taken before them.  It
finds the one taken span that could overlap a candidate by bisection (``llmlab.guardrails.pii.
_non_overlapping``); ``per_span_s`` is the plain way it replaced, a pass over every span taken
per candidate, run in the same process on the same detections.  ``identical`` says the two chose
the same spans.  A request's text is masked before anything is sent, so a long paste of order,
card and phone numbers is paid on the request path.
"""
from __future__ import annotations

import argparse
import random
import sys

from _report import emit, speedup, timed


def _per_span(groups):
    chosen = []
    for spans in groups:
        for span in spans:
            if all(span.end <= c.start or span.start >= c.end for c in chosen):
                chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2_000, help="card / order / phone triples in the text")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from llmlab.guardrails.pii import PIIMasker, _non_overlapping, fold

    rng = random.Random(args.seed)
    text = " ".join(f"card 4111 1111 1111 1111 order {rng.randint(10**7, 10**8)} call 010-1234-{rng.randint(1000, 9999)}"
                    for _ in range(args.repeats))
    masker = PIIMasker()
    folded = fold(text)
    groups = [list(masker._detectors[kind](folded)) for kind in masker.kinds]  # detected once, chosen twice

    fast, bisect_s = timed(_non_overlapping, groups)
    plain, plain_s = timed(_per_span, groups)
    masked, mask_s = timed(masker.mask, text)
    emit({"characters": len(text), "detections": sum(map(len, groups)), "chosen": len(fast),
          "bisection_s": round(bisect_s, 4), "per_span_s": round(plain_s, 4),
          "speedup": speedup(plain_s, bisect_s), "whole_mask_s": round(mask_s, 4),
          "placeholders": len(masked.mapping), "identical": fast == plain}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
