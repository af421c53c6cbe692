"""Every command in the README is exercised: the quickstart runs, CLI lines parse, make targets exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from flowsteer.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _cli_lines() -> list[str]:
    return [line.strip() for block in _blocks("bash") for line in block.splitlines()
            if line.strip().startswith("flowsteer ")]


def test_quickstart_runs_and_prints_the_expected_results(tmp_path):
    (code,) = _blocks("python")
    assert len(code.strip().splitlines()) <= 25
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "391 391 True"
    assert lines[1].startswith("Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format")
    assert lines[1].endswith("-> 391 finish")
    assert float(lines[2]) == 1.0


@pytest.mark.parametrize("line", _cli_lines())
def test_every_cli_line_parses(line):
    argv = shlex.split(line, comments=True)[1:]
    args = build_parser().parse_args(argv)  # SystemExit on a wrong flag or subcommand
    assert callable(args.func)


def test_the_readme_lists_cli_lines():
    assert len(_cli_lines()) >= 8


def test_export_line_runs_for_real(tmp_path, monkeypatch):
    (line,) = [x for x in _cli_lines() if x.startswith("flowsteer export ")]
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(line)[1:]) == 0
    assert "StateGraph" in (tmp_path / "designed.py").read_text() or "build_state_graph" in (
        tmp_path / "designed.py").read_text()


def test_config_paths_in_the_readme_exist():
    for path in re.findall(r"training/configs/[\w.-]+\.yaml", README):
        assert (ROOT / path).is_file(), path


def test_make_targets_in_the_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    named = set(re.findall(r"`make ([\w-]+)`", README)) | set(re.findall(r"^make ([\w-]+)", README, flags=re.M))
    assert {"demo", "test"} <= named
    assert named <= targets, named - targets


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
