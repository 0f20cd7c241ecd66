"""Figure files are the same bytes for the same figure (llmlab.figure_files).

matplotlib writes the time into PDF, SVG, PostScript and gzip headers and draws an SVG's ids
from uuid4: two runs of one seed gave different ``--plot`` files.  SOURCE_DATE_EPOCH, which
matplotlib reads for those dates, stands for "another moment" here without waiting a second.
"""
from __future__ import annotations

import pytest

from llmlab.sim.sweep_cli import main as sweep_main

FORMATS = ["pdf", "svg", "svgz", "eps", "png"]


def _drawn_twice(tmp_path, monkeypatch, fmt: str, draw) -> tuple[bytes, bytes]:
    files = []
    for k, moment in enumerate(("1700000000", "1800000000")):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", moment)
        (tmp_path / str(k)).mkdir()
        path = tmp_path / str(k) / f"figure.{fmt}"  # one name: PostScript writes it as the title
        draw(path)
        files.append(path.read_bytes())
    return files[0], files[1]


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_figure_saved_at_two_moments_is_the_same_bytes(tmp_path, monkeypatch, fmt):
    from llmlab.figure_files import save_figure
    from llmlab.report import pyplot

    def draw(path):
        fig, ax = pyplot().subplots()
        ax.plot([0, 1, 2], [1, 0, 2], marker="o")  # markers and a clipped line: SVG ids
        ax.set_title("cost")
        save_figure(fig, path)
        pyplot().close(fig)

    first, second = _drawn_twice(tmp_path, monkeypatch, fmt, draw)
    assert first == second and len(first) > 1_000


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_a_sweeps_plot_is_the_same_file_on_every_run(tmp_path, monkeypatch, capsys, fmt):
    def draw(path):
        assert sweep_main(["--scenario", "b2b-saas", "--grid", "gateway.cache.exact=[true, false]",
                           "--set", "gateway.cache.embedder=hashed", "--requests", "20", "--processes", "1",
                           "--json", "--plot", str(path)]) == 0

    first, second = _drawn_twice(tmp_path, monkeypatch, fmt, draw)
    assert first == second
