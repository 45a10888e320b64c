"""`afterimage simulate`: local stand-ins for the nine providers' APIs, callbacks and CDNs.

Written from the documented wire shapes (docs: spec/providers.md), independently of
`afterimage.providers`, so that it also checks the adapters.
"""


from __future__ import annotations

import importlib
from typing import Any

# Loaded when first asked for (PEP 562): `afterimage` registers the `simulate` command in every
# process, and the receiver, workers and poller should not carry the simulator's server.
_HOMES = {
    "create_app": "app", "PROVIDERS": "config", "SimConfig": "config", "Faults": "faults",
    "RunningSimulator": "server", "run_simulator": "server",
}  # fmt: skip
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
