"""The provider adapters, by name. Performs no I/O beyond finding installed packages.

Besides the nine built in, a package may add providers by naming their adapters (a
ProviderAdapter subclass or instance) in the `afterimage.providers` entry-point group; see
docs/providers.md.
"""

from __future__ import annotations

import logging
import re
from importlib.metadata import entry_points

from afterimage.errors import UnknownProviderError
from afterimage.providers.apimart import Apimart
from afterimage.providers.base import ProviderAdapter
from afterimage.providers.bfl import Bfl
from afterimage.providers.crun import Crun
from afterimage.providers.evolink import Evolink
from afterimage.providers.fal import Fal
from afterimage.providers.kie import Kie
from afterimage.providers.replicate import Replicate
from afterimage.providers.toapis import Toapis
from afterimage.providers.xingchao import Xingchao

log = logging.getLogger("afterimage.providers")
ENTRY_POINTS = "afterimage.providers"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
BUILT_IN: tuple[ProviderAdapter, ...] = (
    Crun(), Kie(), Evolink(), Apimart(), Toapis(), Xingchao(), Replicate(), Fal(), Bfl(),
)


def installed() -> list[ProviderAdapter]:
    """The adapters other packages name in the `afterimage.providers` entry-point group; one
    that cannot be loaded, or is not an adapter, is logged and left out."""
    found: list[ProviderAdapter] = []
    for ep in entry_points(group=ENTRY_POINTS):
        try:
            obj = ep.load()
            made = obj() if isinstance(obj, type) else obj
        except Exception as exc:  # a broken plug-in must not stop afterimage
            log.error("provider entry point %s cannot be loaded: %s", ep.name, exc)
            continue
        if not isinstance(made, ProviderAdapter):
            log.error("provider entry point %s is not a ProviderAdapter", ep.name)
            continue
        if not NAME.match(getattr(made, "name", "")):
            log.error("provider entry point %s: name must match %s", ep.name, NAME.pattern)
            continue
        found.append(made)
    return found


def _by_name() -> dict[str, ProviderAdapter]:
    out = {a.name: a for a in BUILT_IN}
    for extra in installed():
        if extra.name in out:
            log.error("provider %s from an entry point is already known; ignored", extra.name)
            continue
        out[extra.name] = extra
    return out


ADAPTERS: dict[str, ProviderAdapter] = _by_name()
NAMES: tuple[str, ...] = tuple(ADAPTERS)


def adapter(name: str) -> ProviderAdapter:
    """The adapter for `name`, or UnknownProviderError."""
    try:
        return ADAPTERS[name]
    except KeyError:
        known = ", ".join(ADAPTERS)
        raise UnknownProviderError(f"unknown provider {name!r} (one of: {known})") from None
