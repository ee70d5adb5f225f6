"""requirements/deploy.txt, the lock CI installs with hashes, agrees with pyproject.toml and .pulumi-version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "deploy.txt"
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s\\;]+)")


def locked() -> dict[str, tuple[Version, list[str]]]:
    """Package -> (version, hashes) from the lock."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    current: str | None = None
    for line in LOCK.read_text().splitlines():
        match = ENTRY.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            entries[current] = (Version(match.group(3)), [])
        elif current and line.strip().startswith("--hash=sha256:"):
            entries[current][1].append(line.strip().split(":", 1)[1].rstrip(" \\"))
        elif not line.startswith(" "):
            current = None
    return entries


def requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    build_in = [line for line in (REPO / "requirements" / "build.in").read_text().splitlines() if line[:1].isalnum()]
    # The policy extra is locked too: CI's apply runs the CrossGuard pack from the project's own (hash-locked) .venv.
    policy = project["project"]["optional-dependencies"]["policy"]
    return [Requirement(r) for r in project["project"]["dependencies"] + policy + build_in]


def test_every_locked_package_is_pinned_with_hashes() -> None:
    entries = locked()
    assert len(entries) > 20
    for name, (_, hashes) in entries.items():
        assert hashes, f"{name} has no --hash in {LOCK.name}"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_the_lock_satisfies_pyproject() -> None:
    entries = locked()
    for requirement in requirements():
        if requirement.marker is not None and not requirement.marker.evaluate({"python_version": "3.11"}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{requirement} is in pyproject.toml but not in {LOCK.name}: run `make lock`"
        version = entries[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} in {LOCK.name} does not satisfy {requirement}: run `make lock`"
        )


def test_the_lock_says_how_to_refresh_it() -> None:
    assert "#    make lock" in LOCK.read_text().split("\n", 3)[1]


def test_pulumi_cli_matches_the_locked_sdk() -> None:
    assert (REPO / ".pulumi-version").read_text().strip() == str(locked()["pulumi"][0])


def test_python_version_matches_the_lock_target() -> None:
    assert (REPO / ".python-version").read_text().strip() == "3.11"
    assert "--python-version 3.11" in (REPO / "Makefile").read_text()
