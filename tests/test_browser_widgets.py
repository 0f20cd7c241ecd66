"""Notebook 03's threshold panel in a real browser: Voilà serves it, headless Chromium drives it.

Follows the measured recipe in the project's facts: Voilà in its own process group on 127.0.0.1
(the TCP port is polled: ``/api`` answers 403 in single-notebook mode), Debian's Chromium through
Playwright with the listed flags, ``wait_until="domcontentloaded"`` (the template's CDN icon font
fails offline), non-loopback requests aborted, and exact final values asserted.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "03_caching.ipynb"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"voila did not listen on port {port} within {timeout_s:.0f} s")


@pytest.fixture
def voila_url(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/install-system-deps.sh)")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    pytest.importorskip("voila", reason="voila is not installed")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (voila does not pull it in)")
    port = _free_port()
    env = dict(os.environ, LLMLAB_NOTEBOOK_EMBEDDER="hashed", LITELLM_LOCAL_MODEL_COST_MAP="True",
               LITELLM_OFFLINE_MODE="true", LLMLAB_CACHE_DIR=str(tmp_path / "llmlab-cache"))
    env.pop("MPLBACKEND", None)
    log = open(tmp_path / "voila.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "voila", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
                             NOTEBOOK.name], cwd=NOTEBOOK.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: stopping it also ends the kernel
    try:
        _wait_for_port(port, proc, 30.0)
        yield f"http://127.0.0.1:{port}/"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _only_loopback(route):
    url = route.request.url
    if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
        route.continue_()
    else:
        route.abort()


def test_threshold_slider_in_voila(voila_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.route("**/*", _only_loopback)
            page.goto(voila_url, wait_until="domcontentloaded", timeout=30_000)

            slider = page.locator(".llmlab-threshold")
            handle = slider.locator(".noUi-handle")
            readout = slider.locator(".widget-readout")
            text_box = page.locator(".llmlab-threshold-text input")
            plot_img = page.locator(".llmlab-plot .widget-output img, .llmlab-plot img").first
            headline = page.locator(".llmlab-headline")
            summary = page.locator(".llmlab-summary")
            error = page.locator(".llmlab-error")

            handle.wait_for(state="visible", timeout=45_000)  # the kernel has run the notebook up to the panel
            plot_img.wait_for(state="visible", timeout=20_000)
            expect(headline).to_contain_text("threshold 0.", timeout=10_000)
            start = float(readout.inner_text())  # the embedder's calibrated threshold
            first_src = plot_img.get_attribute("src")
            first_summary = summary.inner_text()
            assert first_src.startswith("data:image/png;base64,")
            assert f"threshold {start:.2f}" in headline.inner_text()

            steps, key = (8, "ArrowRight") if start <= 0.9 else (8, "ArrowLeft")
            target = round(start + (0.01 if key == "ArrowRight" else -0.01) * steps, 2)
            handle.focus()
            for _ in range(steps):
                handle.press(key)
            expect(readout).to_have_text(f"{target:.2f}", timeout=10_000)
            expect(text_box).to_have_value(f"{target:g}", timeout=10_000)
            expect(headline).to_contain_text(f"threshold {target:.2f}", timeout=20_000)
            expect(summary).to_contain_text(f"{target:.3f}", timeout=10_000)
            assert summary.inner_text() != first_summary
            expect(plot_img).not_to_have_attribute("src", first_src, timeout=10_000)
            page.locator(".llmlab-panel").screenshot(path=str(tmp_path / "threshold-moved.png"))

            # bad input: the semantic cache's own message, and the panel keeps working
            text_box.fill("1.5")
            text_box.press("Enter")
            expect(error).to_contain_text("threshold=1.5 is invalid: allowed a number in [0, 1]", timeout=20_000)
            expect(readout).to_have_text(f"{target:.2f}")
            text_box.fill("0.6")
            text_box.press("Enter")
            expect(headline).to_contain_text("threshold 0.60", timeout=20_000)
            expect(readout).to_have_text("0.60", timeout=10_000)
            expect(error).to_be_hidden(timeout=10_000)
            page.screenshot(path=str(tmp_path / "page-threshold-0.60.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "threshold-moved.png").stat().st_size > 10_000
    assert time.monotonic() - started < 60.0
