"""The SimPy driver: performs the *real* pipeline's effects in virtual time.

The pipeline is a generator of effects, and so is a SimPy process, so driving one from the
other is a loop — the same loop as :func:`llmlab.runloop.drive`, with the effects performed by
simulated things instead of litellm and ``time.sleep``:

* ``Call``  → the deployment's :class:`~llmlab.sim.providers.SimProvider` (queueing, latency,
  rate limits, errors, outages), delegated with ``yield from`` — the provider's ``serve`` is a
  SimPy generator, and inlining it saves a process (two events) per call compared to
  ``yield env.process(...)``; the semantics are identical;
* ``Race`` (a hedged call) → two provider calls, each a process of its own, the loser
  interrupted (:mod:`llmlab.sim.race`);
* ``Sleep`` → ``env.timeout``;
* ``JoinFlight`` (coalescing) → an event that the identical request's landing or the wait's
  timeout triggers, whichever comes first (:func:`join_flight`);
* ``Embed`` → the embedder, memoised per text (queries come from a bounded vocabulary and are
  embedded in batches before the run), plus the modelled latency and price.

Nothing the providers or embedders do can end the run: an unexpected exception becomes a
``CallError`` for the pipeline, which turns it into a typed outcome like any provider failure.
"""
from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any, Generator, Iterable, Mapping

import numpy as np

from ..cache.index import settled_unit
from ..cache.table import MAX_TABLE_TEXTS, SimilarityTable
from ..effects import (Call, CallError, EmbedResult, ErrorKind, JoinFlight, Outcome, Race, RaceResult, Sleep,
                       embedding_cost)
from .providers import GOLDEN, M64, SimProvider, mix64
from .race import run_race

if TYPE_CHECKING:
    import simpy

log = logging.getLogger("llmlab.sim")


class PricedEmbedder:
    """A local embedder that charges the simulated system's embedding price.

    The price of an embedding (``gateway.cache.embed_cost_usd_per_1m``) belongs to the simulated
    world, like a provider's latency.  Known to the driver alone, it was charged after the lookup
    while the pipeline held nothing for it, and took tenants at their cap past it.  Carried by the
    embedder as ``cost_usd``, the attribute a priced API embedder has, the pipeline holds it with
    the answer it precedes as it does live (``Pipeline._held_embedding``).  Everything else is the
    wrapped embedder's.
    """

    def __init__(self, embedder: Any, cost_per_1m_tokens: float) -> None:
        self.inner = embedder
        self.cost_per_1m_tokens = float(cost_per_1m_tokens)

    def embed(self, texts: Any) -> Any:
        return self.inner.embed(texts)

    def cost_usd(self, texts: Iterable[str]) -> float:
        from ..tokens import estimate_tokens

        return sum(estimate_tokens(t) for t in texts) * self.cost_per_1m_tokens / 1e6

    def __getattr__(self, name: str) -> Any:  # name, dim, latency_hint_s …: the wrapped embedder's
        if name == "inner":  # not set yet (a copy or unpickling in progress): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class EmbedModel:
    """An embedder plus what embedding costs in the simulated system (latency, USD), memoised.

    With ``cost_per_1m_tokens`` the embedder is wrapped in a :class:`PricedEmbedder`:
    ``model.embedder`` is what the semantic cache must be built with, so that the pipeline sees
    the price it is charged."""

    def __init__(self, embedder: Any, *, latency_s: float | None = None, cost_per_1m_tokens: float = 0.0,
                 opaque: Iterable[str] = ()) -> None:
        self.embedder = PricedEmbedder(embedder, cost_per_1m_tokens) if cost_per_1m_tokens else embedder
        self.latency_s = float(getattr(embedder, "latency_hint_s", 0.0) if latency_s is None else latency_s)
        self.opaque = set(opaque)
        self._memo: dict[str, tuple[np.ndarray, float]] = {}
        self._table: SimilarityTable | None = None

    def _cost(self, text: str) -> float:
        return embedding_cost(self.embedder, [text])

    def _opaque_vector(self, text: str) -> np.ndarray:
        """A random unit vector fixed by the text: a hashed prompt resembles nothing else.

        Seeded by the text's SHA-256: seeded by its CRC-32, two of a trace's distinct hashed
        prompts shared a vector once in about 2**32 / n pairs (≈ one pair in a log of 100k
        distinct prompts), and each served the other's cached answer at similarity 1."""
        dim = int(getattr(self.embedder, "dim", 0) or 384)
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest(), "big"))
        v = rng.standard_normal(dim).astype(np.float32)
        return _settled_row(v)

    def prime(self, texts: Iterable[str], batch: int = 256) -> int:
        """Embed every distinct text up front, in batches; returns how many were new."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo and t.strip()]
        for t in [t for t in todo if t in self.opaque]:
            self._memo[t] = (self._opaque_vector(t), 0.0)
        todo = [t for t in todo if t not in self.opaque]
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            vectors = np.asarray(self.embedder.embed(chunk), dtype=np.float32)
            for k, t in enumerate(chunk):
                self._memo[t] = (_settled_row(vectors[k]), self._cost(t))
        return len(todo)

    def similarity_table(self) -> SimilarityTable | None:
        """The memoised vectors as a :class:`~llmlab.cache.table.SimilarityTable` for the semantic
        cache (rebuilt when texts were added since), or None above ``MAX_TABLE_TEXTS`` texts."""
        if len(self._memo) > MAX_TABLE_TEXTS:
            return None
        if self._table is None or len(self._table) != len(self._memo):
            texts = list(self._memo)
            self._table = SimilarityTable(texts, [self._memo[t][0] for t in texts])
        return self._table

    def embed(self, texts: tuple[str, ...]) -> EmbedResult:
        memo = self._memo
        if len(texts) == 1:
            hit = memo.get(texts[0])
            if hit is None:
                self.prime(texts)
                hit = memo[texts[0]]
            return EmbedResult(hit[0], hit[1], self.latency_s)
        missing = [t for t in texts if t not in memo]
        if missing:
            self.prime(missing)
        rows = [memo[t] for t in texts]
        return EmbedResult(np.vstack([r[0] for r in rows]), sum(r[1] for r in rows), self.latency_s * len(texts))


def _settled_row(vector: np.ndarray) -> np.ndarray:
    """A (1, dim) read-only row the semantic cache can use without normalising it again."""
    settled = settled_unit(vector)
    row = (vector if settled is None else settled)[None, :].copy()
    row.flags.writeable = False
    return row


class Task:
    """A generator run on SimPy events, without being a ``simpy.Process``.

    A user turn is a generator of SimPy events, and nothing ever waits for one to end.  Run as a
    ``simpy.Process`` it cost two events of its own — an ``Initialize`` to start it, and the
    process's own event scheduled when it returns, which nobody listened to: two of the ≈ 4.7
    events of a b2b-saas turn (with the arrivals process's resumption, 3 % of a run's
    instructions).  A task is started by a call (from the callback of the event that makes it
    begin: its arrival) and resumed by the events it yields, as a process is, in the same order:
    the results are the same event for event.  A failed event is thrown into the generator, as a
    process does; what the generator raises propagates to ``env.run()`` (the turn guards itself).
    """

    __slots__ = ("gen", "resume")

    def __init__(self, gen: Generator[Any, Any, Any]) -> None:
        self.gen = gen
        self.resume = self._resume  # bound once: appended to every event the task waits for

    def _resume(self, event: Any) -> None:
        gen = self.gen
        while True:
            try:
                if event._ok:
                    event = gen.send(event._value)
                else:
                    event._defused = True
                    event = gen.throw(event._value)
            except StopIteration:
                return
            if event.callbacks is not None:  # not yet processed: wait for it
                event.callbacks.append(self.resume)
                return

    def start(self) -> None:
        """Run the generator to its first wait, now."""
        try:
            event = next(self.gen)
        except StopIteration:
            return
        if event.callbacks is not None:
            event.callbacks.append(self.resume)
        else:
            self._resume(event)


class SimDriver:
    """Runs ``pipeline.handle(...)`` generators as SimPy processes against simulated providers."""

    races = True  # performs hedged calls (llmlab.sim.race)

    def __init__(self, env: "simpy.Environment", providers: Mapping[str, SimProvider],
                 embed: EmbedModel | None = None) -> None:
        self.env = env
        self.providers = dict(providers)
        self.embed_model = embed
        self.internal_errors = 0

    def drive(self, gen: Generator[Any, Any, Outcome], key: int) -> Generator[Any, Any, Outcome | None]:
        """``outcome = yield from driver.drive(pipeline.handle(request), key)`` inside a SimPy process.

        ``key`` identifies the request for the providers' counter-based random draws: the k-th
        call of a request to a deployment for a purpose always sees the same numbers.
        """
        env = self.env
        providers = self.providers
        counts: dict[tuple[str, str], int] | None = None
        try:
            effect = next(gen)
            while True:
                kind = type(effect)
                if kind is Call:
                    name = effect.deployment.name
                    provider = providers.get(name)
                    if provider is None:
                        value: Any = CallError(ErrorKind.BAD_REQUEST, f"no simulated provider for deployment {name!r}")
                    else:
                        slot = (name, effect.purpose)
                        if counts is None:
                            counts = {slot: 1}
                            n = 0
                        else:
                            n = counts.get(slot, 0)
                            counts[slot] = n + 1
                        call_key = call_key_of(key, n, effect.purpose)
                        try:
                            value = yield from provider.serve(effect, call_key)
                        except Exception as exc:  # a simulator bug must not end the run
                            self.internal_errors += 1
                            log.exception("simulated provider %s failed", name)
                            value = CallError(ErrorKind.SERVER, f"simulator error: {type(exc).__name__}: {exc}")
                elif kind is Race:
                    if counts is None:
                        counts = {}
                    value = yield from self._race(effect, key, counts)
                elif kind is Sleep:
                    if effect.seconds > 0:
                        yield env.timeout(effect.seconds)
                    value = None
                elif kind is JoinFlight:
                    value = yield join_flight(env, effect)
                else:  # Embed
                    model = self.embed_model
                    if model is None or effect.embedder is not model.embedder:
                        model = self.embed_model = EmbedModel(effect.embedder)
                    value = model.embed(effect.texts)
                    if value.latency_s > 0:
                        yield env.timeout(value.latency_s)
                effect = gen.send(value)
        except StopIteration as stop:
            return stop.value
        except Exception:  # the pipeline already turns failures into outcomes; this is a last guard
            self.internal_errors += 1
            log.exception("pipeline generator failed in the simulator")
            return None

    def _race(self, effect: Race, key: int, counts: dict[tuple[str, str], int]
              ) -> Generator[Any, Any, RaceResult]:
        """A hedged call (:mod:`llmlab.sim.race`); each call's draws keyed as a plain call's are."""
        missing = [c.deployment.name for c in (effect.first, effect.second) if c.deployment.name not in self.providers]
        if missing:
            return RaceResult(CallError(ErrorKind.BAD_REQUEST, f"no simulated provider for deployment {missing[0]!r}"))

        def key_of(call: Call) -> int:
            slot = (call.deployment.name, call.purpose)
            n = counts.get(slot, 0)
            counts[slot] = n + 1
            return call_key_of(key, n, call.purpose)

        try:
            return (yield from run_race(self.env, effect, (self.providers[effect.first.deployment.name],
                                                           self.providers[effect.second.deployment.name]), key_of))
        except Exception as exc:  # a simulator bug must not end the run
            self.internal_errors += 1
            log.exception("simulated race failed")
            return RaceResult(CallError(ErrorKind.SERVER, f"simulator error: {type(exc).__name__}: {exc}"))


def join_flight(env: "simpy.Environment", effect: JoinFlight) -> Any:
    """An event that succeeds with True when ``effect``'s flight lands, or with False when its
    ``wait_s`` runs out first (already succeeded when the flight has landed)."""
    done = env.event()

    def settle(landed: bool) -> None:
        if not done.triggered:
            done.succeed(landed)

    if not effect.flight.on_landing(lambda: settle(True)):
        done.succeed(True)
        return done
    env.timeout(effect.wait_s).callbacks.append(lambda _: settle(False))
    return done


_PURPOSE = {"answer": 0, "classify": mix64(1), "cascade": mix64(2)}


def call_key_of(key: int, n: int, purpose: str) -> int:
    """The random-draw key of a request's ``n``-th call to one deployment for ``purpose``: one
    formula for plain and raced calls, so a hedged run draws what an unhedged one would."""
    return mix64((key ^ (n * GOLDEN) ^ _PURPOSE.get(purpose, 0)) & M64)
