"""``llmlab demo``: a dozen requests through cache, router, fallback, budgets and rate limits.

Runs offline on the embedded defaults: litellm's ``mock_response`` stands in for the providers,
and Claude is scripted to fail so the fallback chain and the circuit breaker have work to do.
"""
from __future__ import annotations

import json
from typing import Sequence

from .budgets import BudgetPolicy
from .defaults import default_deployments
from .effects import Deployment, Outcome
from .fallback import RetryPolicy
from .gateway import Gateway
from .ratelimit import RateLimit, RateLimiter
from .routing import ComplexityRouter

LONG = ("Compare our Pro and Enterprise plans for a 40-seat team that needs SSO, audit logs and a 99.9% SLA. "
        "Walk through the total cost for a year including onboarding, explain which compliance features matter "
        "for a fintech customer in Korea, and recommend one plan with the trade-offs spelled out clearly. "
        "Please also list the migration steps from our current tool and the risks of each step, and finish with "
        "a short summary table. Our security team also asks how data residency works for customers in Seoul and "
        "Frankfurt, and whether the audit log export can feed our SIEM every hour.")
MEDIUM = ("My order 48213 was supposed to arrive on Monday but the tracking page has not changed for three days. "
          "Can you check what is happening and tell me whether I can still cancel it?")

#: (tenant, plan, prompt) — chosen to exercise every stage once
SCRIPT: list[tuple[str, str, str]] = [
    ("acme", "paid", "How do I reset my password?"),
    ("acme", "paid", "How do I reset my password?"),            # exact cache hit
    ("acme", "paid", "  How do I   reset my password? "),       # prompt+params normalisation → hit
    ("globex", "free", "How do I reset my password?"),          # other tenant: never shares acme's entry
    ("acme", "paid", MEDIUM),                                   # medium → gpt-4o
    ("acme", "paid", LONG),                                     # high → Claude (down) → fallback gpt-4o
    ("initech", "paid", LONG + " Thanks!"),                     # Claude still down → breaker opens
    ("initech", "paid", LONG + " Urgent."),                     # breaker open → skip Claude at once
    ("tiny", "free", MEDIUM),                                   # monthly cap too small → BudgetExceeded
    ("burst", "free", "Where is my parcel?"),                   # rate limit: 2 requests/min
    ("burst", "free", "Do you ship to Busan?"),
    ("burst", "free", "What are your opening hours?"),          # third in a minute → RateLimited
]


def build_gateway() -> Gateway:
    """The embedded defaults, with mocked providers so no key or network is needed."""
    mocks = {
        "gpt-4o": "[gpt-4o] Here is a detailed, helpful answer.",
        "gpt-4o-mini": "[gpt-4o-mini] Short answer: use the 'Forgot password' link on the sign-in page.",
        "claude-sonnet-4-20250514": "litellm.InternalServerError",  # scripted outage
    }
    deployments = [Deployment(d.name, d.model, {"mock_response": mocks[d.name]}, d.context_window,
                              d.max_output_tokens, d.timeout_s, d.price_model) for d in default_deployments()]
    return Gateway(
        deployments,
        router=ComplexityRouter(),
        budget=BudgetPolicy(caps={"tiny": 0.0001}, default_cap=100.0),
        rate_limiter=RateLimiter(per_tenant={"burst": RateLimit(rpm=2)}),
        retry=RetryPolicy(max_retries=1, base_s=0.05, cap_s=0.2),
        breaker={"failure_threshold": 3, "cooldown_s": 60.0},
        seed=7,
    )


def _row(i: int, o: Outcome, prompt: str) -> list[str]:
    tried = " → ".join(f"{a.deployment}{'✓' if a.ok else '⊘' if a.purpose == 'skip' else '✗'}" for a in o.attempts if a.purpose != "check") or "-"
    what = o.kind.value if o.error is None else o.error.code
    return [str(i), o.tenant, o.plan, (prompt.strip()[:28] + "…") if len(prompt.strip()) > 29 else prompt.strip(),
            o.route_tier or "-", o.cache.value, what, o.deployment or "-", tried, f"{o.cost_usd * 1e6:,.0f}",
            f"{o.latency_s * 1000:,.0f}"]


def render_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    out = [line.format(*header), line.format(*["-" * w for w in widths])]
    out += [line.format(*r) for r in rows]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    from .cli_args import OneLineParser, parse_or_refuse

    parser = OneLineParser(prog="llmlab demo", description=__doc__.splitlines()[0].split(": ", 1)[-1])
    parser.add_argument("--json", action="store_true", help="print the ledger as JSON lines instead of a table")
    args = parse_or_refuse(parser, "llmlab demo", list(argv or []))
    if args is None:
        return 2
    gateway = build_gateway()
    from .live import import_litellm

    # litellm's import and its first call (lazy set-up: ≈ 0.2-0.5 s) are paid here, outside the
    # table's "ms" column: otherwise row 1 reads 100x slower than row 4, the same kind of request
    import_litellm().completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "warm-up"}],
                                mock_response="ok")
    rows = []
    for i, (tenant, plan, prompt) in enumerate(SCRIPT, 1):
        outcome = gateway.complete(prompt, tenant=tenant, plan=plan)
        rows.append(_row(i, outcome, prompt))
    if args.json:
        for record in gateway.ledger.to_dataframe().to_dict(orient="records"):
            clean = {k: None if isinstance(v, float) and v != v else v for k, v in record.items()}  # NaN → null
            print(json.dumps(clean, default=str, allow_nan=False))
        return 0
    header = ["#", "tenant", "plan", "prompt", "route", "cache", "outcome", "served by", "attempts",
              "cost µ$", "ms"]
    print("llmlab gateway walkthrough — mocked providers, Claude scripted to fail\n")
    print(render_table(rows, header))
    print("\nattempts: ✓ answered, ✗ failed (retried with backoff, then next in chain), ⊘ skipped (circuit open)")
    spend = gateway.ledger.spend_by_tenant()
    print("\nspend by tenant (USD): " + ", ".join(f"{t} {c:.6f}" for t, c in sorted(spend.items())))
    stats = gateway.exact_cache.stats
    lookups = stats["hits"] + stats["misses"]
    print(f"exact cache: {stats['entries']} entries, {stats['hits']} hits of {lookups} lookups "
          f"({stats['hit_rate']:.0%}), {stats['evictions']} evictions")
    print("circuit breakers: " + ", ".join(f"{name} {b.state}" for name, b in gateway.pipeline.breakers.items()))
    return 0
