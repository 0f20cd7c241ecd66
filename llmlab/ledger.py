"""Per-request records and spend, exportable as a pandas DataFrame.

The ledger stores each request's :class:`~llmlab.effects.Outcome` as it is — one record per
request, so "none lost, none duplicated" can be checked by counting request ids.
"""
from __future__ import annotations

import math
from collections import defaultdict
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .effects import Outcome
from . import _validate as v
from .errors import ConfigError, is_secret_name, type_shape

if TYPE_CHECKING:  # pandas is imported only when a DataFrame is asked for
    import pandas as pd

COLUMNS = ("request_id", "tenant", "plan", "started_at", "outcome", "cache", "route_tier", "route_reason",
           "model", "deployment", "n_attempts", "n_calls", "retries", "prompt_tokens", "completion_tokens",
           "finish_reason", "cost_usd", "latency_s", "ttft_s", "similarity", "coalesced_with", "error", "error_code",
           "attempts")


def outcome_row(o: Outcome) -> dict[str, Any]:
    calls = [a for a in o.attempts if a.purpose not in ("skip", "check")]
    return {
        "request_id": o.request_id, "tenant": o.tenant, "plan": o.plan, "started_at": o.started_at,
        "outcome": o.kind.value, "cache": o.cache.value, "route_tier": o.route_tier, "route_reason": o.route_reason,
        "model": o.model, "deployment": o.deployment, "n_attempts": len(o.attempts), "n_calls": len(calls),
        "retries": o.retries, "prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens,
        "finish_reason": o.finish_reason, "cost_usd": o.cost_usd, "latency_s": o.latency_s, "ttft_s": o.ttft_s, "similarity": o.similarity,
        "coalesced_with": o.coalesced_with,
        "error": None if o.error is None else str(o.error),
        "error_code": None if o.error is None else o.error.code,
        "attempts": [a.as_dict() for a in o.attempts],
        **{f"meta_{k}": "***" if is_secret_name(k) else val for k, val in o.metadata.items()
           if isinstance(val, (str, int, float, bool))},  # a credential in metadata: hidden as elsewhere
    }


class RowColumns:
    """Rows gathered column by column, as ``pd.DataFrame(list_of_dicts)`` would lay them out
    (columns in order of first appearance, a key a row lacks is NaN): one list per column rather
    than one dict per row, which held ≈ 2 KB per request until the frame was built (a long
    ledger, the simulator's ``--out`` on a million requests)."""

    __slots__ = ("columns", "rows")

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {}
        self.rows = 0

    def append(self, row: dict[str, Any]) -> None:
        columns, n = self.columns, self.rows
        for key, value in row.items():
            column = columns.get(key)
            if column is None:
                column = columns[key] = [math.nan] * n
            column.append(value)
        self.rows = n = n + 1
        if len(row) != len(columns):  # keys this row lacks (a tool turn's ``meta_step`` …)
            for column in columns.values():
                if len(column) < n:
                    column.append(math.nan)


#: what an asyncio service's sink should do instead of awaiting (the sink may run on a step thread)
_HAND_TO_THE_LOOP = ("hand the outcome to your loop instead, e.g. sink=lambda o: loop.call_soon_threadsafe("
                     "queue.put_nowait, o) for an asyncio.Queue a task drains")


def _is_async(sink: Any) -> bool:
    """An ``async def`` sink (or a partial of one, or an object whose ``__call__`` is one)."""
    import inspect

    return inspect.iscoroutinefunction(sink) or inspect.iscoroutinefunction(getattr(sink, "__call__", None))


class Ledger:
    """Keeps every outcome (or hands it to ``sink`` when ``keep=False`` for very long runs).

    ``sink(outcome)`` is called for every request, outside the gateway's lock; one that raises
    is logged (``llmlab ledger sink failed``) and the caller still gets its outcome.  It is called,
    never awaited (on an event loop or a step thread): an ``async def`` sink is refused, and a
    sink that returns a coroutine fails each record loudly instead of dropping it unseen.

    ``tenants`` bounds :meth:`spend_by_tenant` to that many tenants, the most recently served
    (None: every tenant ever seen, one number each for good).  Even ``keep=False`` held a total
    for every tenant ever served: a service whose tenants are its users grew by ≈ 150 B per new
    user for as long as it ran.  :attr:`total_cost_usd` still counts the tenants let go.
    """

    def __init__(self, keep: bool = True, sink: Callable[[Outcome], None] | None = None, *,
                 tenants: int | None = None) -> None:
        # checked here: a sink that is no callable failed on every request, each one logged as
        # "ledger sink failed", and keep="no" kept every record
        self.keep = v.flag("ledger.keep", keep)
        if sink is not None and not callable(sink):
            raise ConfigError("ledger.sink", type_shape(sink), "a callable sink(outcome), or None")
        if sink is not None and _is_async(sink):
            raise ConfigError("ledger.sink", type_shape(sink), "a plain (not async) callable sink(outcome)",
                              hint=_HAND_TO_THE_LOOP)
        self.sink = sink
        self.tenants = None if tenants is None else v.integer("ledger.tenants", tenants, lo=1)
        self.records: list[Outcome] = []
        self._spend: defaultdict[str, float] = defaultdict(float)
        self._let_go_usd = 0.0  # the spend of tenants dropped from _spend (``tenants``)
        self.count = 0

    def record(self, outcome: Outcome) -> None:
        self.tally(outcome)
        self.notify(outcome)

    def tally(self, outcome: Outcome) -> None:
        """Count and keep ``outcome`` (the gateway does this under its lock)."""
        self.count += 1
        if self.tenants is None:
            self._spend[outcome.tenant] += outcome.cost_usd
        else:
            self._spend_recent(outcome.tenant, outcome.cost_usd)
        if self.keep:
            self.records.append(outcome)

    def _spend_recent(self, tenant: str, cost: float) -> None:
        """Add to ``tenant``'s spend and make it the most recent (a dict keeps insertion order);
        the least recently served tenant is let go when there are more than ``tenants``."""
        spend = self._spend
        spend[tenant] = spend.pop(tenant, 0.0) + cost
        if len(spend) > self.tenants:  # type: ignore[operator]
            self._let_go_usd += spend.pop(next(iter(spend)))

    def notify(self, outcome: Outcome) -> None:
        """Hand ``outcome`` to the sink (user code: the gateway calls it outside its lock)."""
        if self.sink is not None and isinstance(self.sink(outcome), CoroutineType):
            # a lambda around an async call (``lambda o: queue.put(o)`` on an asyncio.Queue): its
            # coroutine would never run, and the record would be lost with only a RuntimeWarning
            raise TypeError(f"the ledger sink returned a coroutine, which nothing awaits: the record was not "
                            f"delivered; {_HAND_TO_THE_LOOP}")

    def __repr__(self) -> str:
        kept = "" if self.keep else ", keep=False"
        return f"Ledger(requests={self.count}, tenants={len(self._spend)}, cost_usd={self.total_cost_usd:.6f}{kept})"

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.records)

    def spend_by_tenant(self) -> dict[str, float]:
        """USD spent per tenant: every tenant served, or the ``tenants`` most recently served."""
        return dict(self._spend)

    @property
    def total_cost_usd(self) -> float:
        return sum(self._spend.values()) + self._let_go_usd

    def to_dataframe(self) -> "pd.DataFrame":
        import pandas as pd

        table = RowColumns()
        for o in self.records:
            table.append(outcome_row(o))
        return pd.DataFrame(table.columns) if table.rows else pd.DataFrame(columns=list(COLUMNS))
