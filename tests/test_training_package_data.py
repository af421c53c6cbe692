"""The example training configs ship with the package (``flowsteer.training.configs``)."""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import setuptools

from flowsteer.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_every_training_folder_with_files_is_a_package_setuptools_finds() -> None:
    """setup.py lists ``find_packages("training")``: a data folder without ``__init__.py`` is not shipped."""
    found = set(setuptools.find_packages(where=str(ROOT / "training")))
    folders = {p.parent.relative_to(ROOT / "training") for p in (ROOT / "training").rglob("*")
               if p.is_file() and p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts}
    expected = {".".join(f.parts) for f in folders if f.parts}
    assert expected and expected <= found, expected - found


def test_example_configs_load_as_package_resources() -> None:
    configs = importlib.resources.files("flowsteer.training.configs")
    names = sorted(p.name for p in configs.iterdir() if p.name.endswith(".yaml"))
    assert names == ["director-cpu.yaml", "paper-gpu.yaml", "tiny-cpu.yaml"]
    with importlib.resources.as_file(configs / "director-cpu.yaml") as path:
        assert load_config(path).warmstart.enabled
    with importlib.resources.as_file(configs / "tiny-cpu.yaml") as path:
        assert load_config(path).max_steps >= 1


@pytest.mark.slow  # builds the wheel (~10 s)
def test_wheel_contains_the_example_configs(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a clean copy: a stale build/ folder in the checkout could hide a missing file
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for name in ("flowsteer", "integrations", "training"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out), str(source)], check=True, cwd=tmp_path, timeout=300)
    (wheel,) = out.glob("flowsteer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"flowsteer/training/configs/tiny-cpu.yaml", "flowsteer/training/configs/paper-gpu.yaml"} <= names
