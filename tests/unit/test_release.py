"""The release's version is pyproject.toml's, in one place: CHANGELOG.md has its entry, the
worker reports it (common.version; /health and saga_build_info in test_web_auth)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from common.version import commit, version

ROOT = Path(__file__).parents[2]


def test_the_version_is_pyprojects_and_semantic() -> None:
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert version() == tomllib.load(f)["project"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", version())
    assert commit()  # a commit id in a checkout, "unknown" without git


def test_the_changelog_has_the_version_and_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, flags=re.M)
    names = [name for name, _ in headings]
    assert names[0] == "Unreleased"
    released = version().split(".dev")[0]
    if ".dev" not in version():  # a released version has its dated entry
        assert released in names and dict(headings)[released]
    assert all(dict(headings)[n] for n in names[1:]), "every release has its date"
    # Newest first.
    numbers = [tuple(map(int, n.split("."))) for n in names[1:]]
    assert numbers == sorted(numbers, reverse=True)
