"""The HTML report renders in a real browser: headless Chromium screenshots of an eval and a training page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import director_metrics, make_eval_run

from flowsteer.evaluation import evaluate
from flowsteer.report import write_report
from flowsteer.testing import SimulatedExecutor


def find_chromium() -> str | None:
    """``$FLOWSTEER_CHROMIUM``, else the first Chromium/Chrome on ``PATH``."""
    env = os.environ.get("FLOWSTEER_CHROMIUM")
    if env:
        return env
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((found for name in names if (found := shutil.which(name))), None)


CHROMIUM = find_chromium()
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "img" / "report-example.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium on PATH (apt-get install -y chromium) "
                       "or $FLOWSTEER_CHROMIUM"),
]


def screenshot(html: Path, png: Path, profile: Path, height: int = 2000) -> None:
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size=1280,{height}",
               html.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert png.is_file(), f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"


def assert_not_blank(png: Path) -> None:
    try:
        from PIL import Image, ImageStat
    except ImportError:  # without Pillow, a blank 1280x2000 PNG compresses to a few KiB
        assert png.stat().st_size > 40_000
        return
    with Image.open(png) as image:
        assert image.size == (1280, 2000)
        grey = image.convert("L")
        assert ImageStat.Stat(grey).stddev[0] > 20  # text, tables and diagrams, not an empty page
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 200  # anti-aliased text and coloured boxes


def test_eval_report_renders_in_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the page shows the run folder as given: keep the picture's path short
    run = Path("runs") / "toy-eval"
    tasks = make_eval_run(run)
    executor = SimulatedExecutor({t.question: str(t.answer) for t in tasks}, skill=0.5, seed=5)
    evaluate(tasks, executor=executor, baseline="template:paper-math", out_dir=run)
    html = write_report(run)
    png = tmp_path / "eval.png"
    screenshot(html, png, tmp_path / "profile-eval")
    assert_not_blank(png)
    if os.environ.get("FLOWSTEER_UPDATE_SCREENSHOT"):  # refresh the README's picture on request only
        EXAMPLE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, EXAMPLE)


def test_training_report_renders_in_chromium(tmp_path: Path) -> None:
    run = tmp_path / "train"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in director_metrics(40)))
    html = write_report(run)
    png = tmp_path / "train.png"
    screenshot(html, png, tmp_path / "profile-train")
    assert_not_blank(png)
