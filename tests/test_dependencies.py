"""requirements.lock agrees with pyproject.toml, and the image and bootstrap install from it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


def pins() -> dict[str, Version]:
    pinned: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"not a pin: {line}"
            pinned[canonicalize_name(req.name)] = Version(spec.version)
    return pinned


def test_every_declared_dependency_is_pinned_within_its_bounds() -> None:
    pinned = pins()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in requirements.lock: run scripts/lock"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pinned[name]} outside {req.specifier}: "
            "run scripts/lock")


def test_the_image_and_bootstrap_install_from_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--constraint requirements.lock" in dockerfile
    assert "--no-index --find-links=/wheels" in dockerfile  # nothing but the locked wheels
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text()
    assert "--constraint requirements.lock" in bootstrap
