"""The release's version is pyproject.toml's, in one place: CHANGELOG.md has its entry, the
worker reports it (common.version; /health and saga_build_info in test_web_auth)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from chaos.upgrade import Release, ensure_commit, previous_release, recorded_releases
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


def test_each_recorded_release_is_a_commit_of_this_history_with_that_version() -> None:
    """CHANGELOG.md's commit for each release is in this clone's history (clones without tags
    included) and its pyproject.toml says that version, so the upgrade test's baseline is real."""
    releases = recorded_releases()
    assert [r.version for r in releases][:2] == ["0.2.0", "0.3.0"]
    for release in releases:
        ensure_commit(release)  # a shallow clone is deepened
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{release.commit}:pyproject.toml"],
                               capture_output=True, text=True, check=True).stdout
        assert tomllib.loads(shown)["project"]["version"] == release.version, release
        ancestor = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor",
                                   release.commit, "HEAD"])
        assert ancestor.returncode == 0, f"{release} is not an ancestor of HEAD"


def test_the_upgrade_baseline_is_the_release_recorded_before_this_version() -> None:
    assert previous_release("0.4.0.dev0").tag == "v0.3.0"
    assert previous_release("0.3.1").tag == "v0.3.0"
    assert previous_release("0.3.0") == Release("0.2.0", "e382d37c06c247c5624c0a5320c951c8d0c56fee")
    with pytest.raises(RuntimeError, match=r"no release below 0\.2\.0"):
        previous_release("0.2.0")
    assert previous_release().version != version()


def test_a_release_without_its_commit_is_refused(tmp_path: Path) -> None:
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\n## [Unreleased]\n\n## [0.1.0] - 2026-01-01\n\n"
                                           "Tag `v0.1.0`, commit `" + "0" * 40 + "`.\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(RuntimeError, match="is not in"):
        previous_release("0.2.0", root=tmp_path)
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\n## [0.1.0] - 2026-01-01\n\nNo commit.\n")
    with pytest.raises(RuntimeError, match="names no full commit"):
        recorded_releases(tmp_path)
