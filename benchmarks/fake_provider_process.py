"""The fake OpenAI-compatible provider in a process of its own, for the live benchmarks.

In its own process so that its serving does not share the measured process's interpreter lock
(the benchmarks time the gateway, not the fake server)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_fake_provider(*options: str) -> tuple[subprocess.Popen, str]:
    """Start ``llmlab fake-provider`` on a free port (``options``: more of its flags, such as
    ``--latency-ms 50``); the process and its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "llmlab.cli", "fake-provider", "--port", "0", *options],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    line = proc.stdout.readline()  # "fake provider listening on http://127.0.0.1:PORT/v1 (Ctrl-C to stop)"
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"fake provider did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].split()[0]
