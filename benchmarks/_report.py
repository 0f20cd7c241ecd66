"""How the benchmarks print their results: one JSON object with ``--json``, else aligned lines."""
from __future__ import annotations

import json
from typing import Any, Mapping


def emit(out: Mapping[str, Any], as_json: bool, width: int = 34) -> None:
    if as_json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:{width}s} {value}")
