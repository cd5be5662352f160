"""The install is pinned: ``make setup`` (CI's included) gets the versions ``make test`` passed with."""

from __future__ import annotations

import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipelines.settings import REPO_ROOT


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            found[canonicalize_name(name)] = version.strip()
    return found


def requirements() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    named = project["dependencies"] + [r for extra in extras for r in extra]
    return [Requirement(r) for r in named]


def test_every_dependency_is_pinned_within_the_range_pyproject_allows() -> None:
    pinned = pins()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in constraints.txt: run make lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pinned[name]}, outside {requirement}: run make lock"
        )


def test_the_environment_under_test_is_the_pinned_one() -> None:
    """Every installed package that has a pin runs at it (the image's extra pins, dagster-k8s and its
    dependencies, are not installed here)."""
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    drifted = {
        name: (installed[name], version)
        for name, version in pins().items()
        if name in installed and installed[name] != version
    }
    assert drifted == {}, "installed ≠ pinned (installed, pinned): run make setup"
    assert {canonicalize_name(r.name) for r in requirements()} <= set(installed)
