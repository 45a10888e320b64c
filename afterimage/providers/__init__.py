"""The provider adapters, by name. Performs no I/O."""

from __future__ import annotations

from afterimage.errors import UnknownProviderError
from afterimage.providers.apimart import Apimart
from afterimage.providers.base import ProviderAdapter
from afterimage.providers.crun import Crun
from afterimage.providers.evolink import Evolink
from afterimage.providers.kie import Kie
from afterimage.providers.toapis import Toapis
from afterimage.providers.xingchao import Xingchao

ADAPTERS: dict[str, ProviderAdapter] = {
    a.name: a for a in (Crun(), Kie(), Evolink(), Apimart(), Toapis(), Xingchao())
}
NAMES: tuple[str, ...] = tuple(ADAPTERS)


def adapter(name: str) -> ProviderAdapter:
    """The adapter for `name`, or UnknownProviderError."""
    try:
        return ADAPTERS[name]
    except KeyError:
        known = ", ".join(ADAPTERS)
        raise UnknownProviderError(f"unknown provider {name!r} (one of: {known})") from None
