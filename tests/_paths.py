"""Where the real benchmark files live: ``$FLOWSTEER_SHARED_DATA``, else ``../shared/data`` beside the
repository (CI and the development checkouts lay it there; a worktree elsewhere sets the variable or
links ``shared`` beside itself). Tests that need them skip when absent."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data() -> Path:
    env = os.environ.get("FLOWSTEER_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return candidates[0]


SHARED_DATA = shared_data()
