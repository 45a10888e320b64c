"""A minimal PEP 517 build backend for the example package: one pure-Python wheel holding
`afterimage_example` and the entry point pyproject.toml names. Needs nothing but the standard
library, so pip builds it offline."""

from __future__ import annotations

import base64
import hashlib
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).parent
PACKAGE = "afterimage_example"


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((HERE / "pyproject.toml").read_text())["project"]
    return project


def _dist_info(project: dict[str, object]) -> dict[str, str]:
    name = str(project["name"])
    groups = project.get("entry-points", {})
    assert isinstance(groups, dict)
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n"
        for group, points in groups.items())
    return {
        "METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {project['version']}\n"
                     f"Summary: {project['description']}\n"
                     f"Requires-Python: {project['requires-python']}\n"),
        "WHEEL": ("Wheel-Version: 1.0\nGenerator: example-backend\nRoot-Is-Purelib: true\n"
                  "Tag: py3-none-any\n"),
        "entry_points.txt": entry_points,
    }


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def build_wheel(wheel_directory: str, config_settings: object = None,
                metadata_directory: object = None) -> str:
    project = _project()
    stem = f"{str(project['name']).replace('-', '_')}-{project['version']}"
    wheel = f"{stem}-py3-none-any.whl"
    record = ""
    with zipfile.ZipFile(Path(wheel_directory) / wheel, "w") as out:
        for source in sorted((HERE / PACKAGE).rglob("*.py")):
            path = source.relative_to(HERE).as_posix()
            data = source.read_bytes()
            out.writestr(path, data)
            record += _record_line(path, data)
        for name, text in _dist_info(project).items():
            path = f"{stem}.dist-info/{name}"
            out.writestr(path, text)
            record += _record_line(path, text.encode())
        out.writestr(f"{stem}.dist-info/RECORD", record + f"{stem}.dist-info/RECORD,,\n")
    return wheel


def get_requires_for_build_wheel(config_settings: object = None) -> list[str]:
    return []
