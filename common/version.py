"""Which release this is: pyproject.toml's version (its one place) and the commit built.

The commit comes from BUILD_COMMIT (the image sets it from its build argument: an image has
no .git), else from `git` in a checkout, else "unknown". Read once, when first asked.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from functools import lru_cache
from pathlib import Path

__all__ = ["commit", "version"]

ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


@lru_cache(maxsize=1)
def commit() -> str:
    built = os.environ.get("BUILD_COMMIT", "").strip()
    if built and built != "unknown":
        return built
    if (ROOT / ".git").exists():
        try:
            out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                                 capture_output=True, text=True, timeout=5, check=True)
            return out.stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            pass
    return "unknown"
