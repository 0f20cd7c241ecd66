"""The teaching notebooks: committed clean, generated from code, and executable top to bottom offline.

Execution runs each notebook with nbclient on the ``python3`` kernel of this interpreter
(``ipykernel`` must be importable), with ``notebooks/`` as the working directory, and fails when
a cell errors or a notebook takes 120 s or more.  Notebook 03 uses the fast ``hashed`` embedder
here (``LLMLAB_NOTEBOOK_EMBEDDER``): the multilingual default embeds 2,500 texts on a cold memo.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from script_loader import load_script

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("0*.ipynb"))
LIMIT_S = 120.0


def _builder():
    return load_script("build_notebooks", NB_DIR / "build_notebooks.py")


def test_seven_notebooks_are_committed():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "widgets" not in nb.metadata  # no saved widget state either
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {cell.id} has outputs"
            assert cell.execution_count is None, f"{path.name} cell {cell.id} has an execution count"


def test_generator_reproduces_the_committed_files_exactly():
    builder = _builder()
    assert sorted(builder.NOTEBOOKS) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        assert builder.render(path.name) == path.read_text(encoding="utf-8"), \
            f"{path.name} differs from notebooks/build_notebooks.py: run python notebooks/build_notebooks.py"
    assert builder.main(["--check"]) == 0


def test_the_python3_kernel_is_this_interpreter_with_ipykernel():
    """nbclient starts kernel "python3": it must exist here and run this venv's Python."""
    pytest.importorskip("nbclient")
    import ipykernel  # noqa: F401  - voila/nbclient do not pull it in; the notebooks extra does
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] in ("python", "python3", sys.executable), spec.argv


@pytest.fixture
def kernel_env(monkeypatch, tmp_path):
    """What the kernel inherits: offline litellm, the fast embedder, a private memo and matplotlib cache."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("LITELLM_OFFLINE_MODE", "true")
    monkeypatch.setenv("LLMLAB_NOTEBOOK_EMBEDDER", "hashed")
    monkeypatch.setenv("LLMLAB_CACHE_DIR", str(tmp_path / "llmlab-cache"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as in Jupyter


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_offline_within_the_limit(path, kernel_env):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=int(LIMIT_S), kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(NB_DIR)}})
    started = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - started
    assert elapsed < LIMIT_S, f"{path.name} took {elapsed:.0f} s"
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    stderr = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "missing from font" not in stderr and "Traceback" not in stderr, stderr[:2000]
    assert "RuntimeWarning" not in stderr, stderr[:2000]  # numpy's inf - inf under notebook 06's CDF
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew no figure"


# ----------------------------------------------------------------------------- verdicts the notebooks print
def test_repeat_outcomes_says_why_each_repeat_missed_the_cache():
    """Notebooks 03 and 05 explain the gap to the lecture's 70 % with these buckets, not by assertion."""
    import pandas as pd

    from llmlab.teaching import repeat_outcomes

    rows = [  # turn, session, tenant, key, arrival, latency, outcome, cache
        (0, 0, "a", "k1", 0.0, 1.0, "model", "miss"),      # first ask (opening turn)
        (1, 1, "a", "k1", 0.5, 1.0, "model", "miss"),      # repeat while turn 0 is still in flight
        (2, 2, "a", "k1", 5.0, 0.0, "cache", "semantic_hit"),  # repeat served from cache
        (3, 2, "a", "k1", 6.0, 1.0, "model", "miss"),      # repeat inside session 2: other context
        (4, 3, "a", "k1", 9.0, 1.0, "model", "miss"),      # an answer was cached: the lookup missed it
        (5, 4, "b", "k1", 9.5, 1.0, "model", "miss"),      # tenant b's first ask: not a repeat
        (6, 5, "a", "k2", 10.0, 1.0, "model", "miss"),     # k2 first asked ...
        (7, 5, "a", "k3", 11.0, 1.0, "model", "miss"),     # (k3, mid-conversation)
        (8, 6, "a", "k3", 20.0, 1.0, "model", "miss"),     # ... k3 only ever asked mid-conversation: nothing cached
    ]
    df = pd.DataFrame(rows, columns=["turn", "session", "tenant", "answer_key", "arrival_s", "turn_latency_s",
                                     "outcome", "cache"])
    out = repeat_outcomes(df)
    assert out["repeats"] == 5
    assert out["served_from_cache"] == pytest.approx(1 / 5)
    assert out["mid_conversation"] == pytest.approx(1 / 5)
    assert out["no_answer_cached_yet"] == pytest.approx(2 / 5)
    assert out["missed_cached_answer"] == pytest.approx(1 / 5)
    assert out["cacheable"] == pytest.approx(2 / 5)


def test_repeat_outcomes_files_a_conversation_begun_before_the_run_as_mid_conversation():
    """A run starts in the steady state: some sessions' first turn in it continues a conversation
    begun before the run (Traffic.carried), so its cache namespace holds that context and no
    other conversation's answer can serve it.  It was filed as an opening turn: a
    'missed_cached_answer' that no cache tuning could have served, inflating 'cacheable'."""
    import pandas as pd

    from llmlab.teaching import repeat_outcomes

    rows = [  # turn, session, tenant, key, arrival, latency, outcome, cache, opening
        (0, 0, "a", "k1", 0.0, 1.0, "model", "miss", True),     # first ask, answered and cached
        (1, 1, "a", "k1", 5.0, 1.0, "model", "miss", False),    # session 1 began before the run
        (2, 2, "a", "k1", 9.0, 1.0, "model", "miss", True),     # an opening turn the lookup missed
    ]
    df = pd.DataFrame(rows, columns=["turn", "session", "tenant", "answer_key", "arrival_s", "turn_latency_s",
                                     "outcome", "cache", "opening"])
    out = repeat_outcomes(df)
    assert out["repeats"] == 2
    assert out["mid_conversation"] == pytest.approx(1 / 2)
    assert out["missed_cached_answer"] == pytest.approx(1 / 2)


def test_the_requests_frame_says_which_turns_open_their_conversation():
    """``opening`` is False for every turn of a conversation already going when the run began."""
    from llmlab.sim import simulate
    from llmlab.sim.traffic import generate_traffic
    from llmlab.teaching import CALM

    result = simulate("b2b-saas", requests=300, seed=3, baseline=False, overrides=CALM)
    traffic = generate_traffic(result.scenario, requests=300, seed=3)
    df = result.requests.drop_duplicates("turn")
    assert list(df["session"]) == [int(traffic.session[t]) for t in df["turn"]]  # the run's own traffic
    carried = df["session"].isin(list(traffic.carried))
    assert carried.any() and not df.loc[carried, "opening"].any()
    first = df["turn"] == df.groupby("session")["turn"].transform("min")
    assert (df.loc[~carried, "opening"] == first[~carried]).all()


def test_against_range_reads_a_measurement_against_a_claimed_range():
    from llmlab.teaching import against_range

    assert [against_range(v, 50, 70) for v in (39.5, 50, 61.2, 70, 87.8)] == \
        ["below", "within", "within", "within", "above"]
    with pytest.raises(ValueError, match="low"):
        against_range(60, 70, 50)
    with pytest.raises(ValueError, match="value"):
        against_range(float("nan"), 50, 70)


def test_repeat_outcomes_agrees_with_repeated_question_savings_on_a_simulation():
    """The two helpers count the same repeats: the buckets sum to one and the served share matches."""
    from llmlab.sim import simulate
    from llmlab.teaching import CALM, REPEAT_OUTCOMES, no_caps, repeat_outcomes, repeated_question_savings

    calm = {**CALM, **no_caps("b2b-saas"), "gateway.cache.embedder": "hashed"}
    cached = simulate("b2b-saas", requests=400, seed=3, baseline=False, overrides=calm)
    uncached = simulate("b2b-saas", requests=400, seed=3, baseline=False,
                        overrides={**calm, "gateway.cache.exact": False, "gateway.cache.semantic": False})
    why = repeat_outcomes(cached)
    savings = repeated_question_savings(cached, uncached)
    assert why["repeats"] == round(savings["repeat_share"] * savings["turns"]) > 0
    assert sum(why[k] for k in REPEAT_OUTCOMES) == pytest.approx(1.0)
    assert why["served_from_cache"] == pytest.approx(savings["repeats_served_from_cache"])
    assert why["mid_conversation"] > 0  # b2b-saas sessions have several turns
