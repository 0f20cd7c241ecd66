"""Two replicas of the shared semantic cache on one real redis-server against the reference.

Each replica (a :class:`~llmlab.backends.SharedSemanticCache` over its own local cache) stores,
looks up and falls back to the last resort in a few namespaces; writes of one replica reach the
other at its next lookup there.  The reference is the union of every replica's writes, in the
order they were published (the stream's order): after its lookup's sync, a replica must answer
as the reference does — the same entry, value, similarity and staleness, never another
namespace's — and hold exactly the namespace's texts with their latest values.  Both replicas
must therefore agree.  Local capacity is ample here (eviction is per replica, and fuzzed in
``test_semantic_fuzz.py``).  Derandomised and bounded: a few seconds.
"""
from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmlab.backends import from_url
from redis_fixtures import redis_server  # noqa: F401
from test_semantic_fuzz import NAMESPACES, SETTINGS, TTL_S, check_hit, hand_world, small_vectors

pytestmark = pytest.mark.redis

replica_ix = st.integers(0, 1)
text_ix = st.integers(0, 15)
ns_ix = st.sampled_from([0, 0, 0, 1, 2])
REPLICA_OPS = st.one_of(
    st.tuples(st.just("store"), replica_ix, ns_ix, text_ix),
    st.tuples(st.just("store"), replica_ix, ns_ix, text_ix),
    st.tuples(st.just("lookup"), replica_ix, ns_ix, text_ix),
    st.tuples(st.just("last_resort"), replica_ix, ns_ix, text_ix),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 1.0, TTL_S])),
)


def run_replicas(url: str, world, ops: list[tuple]) -> None:
    prefix = f"f{uuid.uuid4().hex[:10]}"
    replicas = [from_url(url, prefix, semantic_cache=world.cache()).semantic_cache for _ in range(2)]
    for shared in replicas:
        shared.answers_only = False  # the values are plain JSON here, not gateway answers
    ref = world.reference(replicas[0].local)
    now = 0.0
    for step, op in enumerate(ops):
        where = f"step {step} {op}"
        if op[0] == "advance":
            now += op[1]
            continue
        shared, ns, text = replicas[op[1]], NAMESPACES[op[2]], world.texts[op[3]]
        vector = world.vectors[text]
        if op[0] == "store":
            value = world.value(ns, text)
            assert shared.store(ns, text, vector, value, now) == ref.store(ns, text, vector, value, now), where
            continue
        if op[0] == "lookup":
            hit = shared.lookup(ns, text, vector, now)
            verdict = ref.acceptable(ns, text, vector, now)
        else:
            hit = shared.lookup_last_resort(ns, text, vector, now)
            verdict = ref.acceptable(ns, text, vector, now, last_resort=True)
        held = {t: e.value for t, e in ref.entries.get(ns, {}).items()}
        local = shared.local
        got = {t: local._spaces[ns].entries[local._spaces[ns].by_text[t]].value
               for t in (local.entries(ns) if ns in local.namespaces() else [])}
        assert got == held, f"{where}: replica {op[1]} holds {got}, the writes were {held}"
        check_hit(world, ref, ns, text, vector, now, hit, verdict, where)


@settings(SETTINGS, max_examples=100)
@given(ops=st.lists(REPLICA_OPS, min_size=10, max_size=40), rows=small_vectors, veto=st.sampled_from([None, 0]))
def test_two_replicas_agree_with_the_reference(redis_server, ops, rows, veto):
    run_replicas(redis_server.url, hand_world(rows, 100, 8, 0.7, veto), ops)


def test_a_replicas_later_write_is_not_replaced_by_an_earlier_one_from_another(redis_server):
    """Replica two wrote a text, then replica one wrote it again before reading the stream.  At its
    next lookup replica one replayed two's (older) entry over its own newer one and skipped its
    own: it served the old value for good, while replica two, replaying one's, served the new —
    two replicas disagreeing with no further write to settle it."""
    world = hand_world([[1, 0, 0, 0]] * 16, 100, 8, 0.7, None)
    prefix = f"f{uuid.uuid4().hex[:10]}"
    one, two = (from_url(redis_server.url, prefix, semantic_cache=world.cache()).semantic_cache for _ in range(2))
    one.answers_only = two.answers_only = False  # plain JSON values
    ns, vec = "acme|c0|k", world.vectors["q0"]
    two.store(ns, "q0", vec, "old", 0.0)
    one.store(ns, "q0", vec, "new", 1.0)
    assert [one.lookup(ns, "q0", vec, 2.0).value, two.lookup(ns, "q0", vec, 2.0).value] == ["new", "new"]
