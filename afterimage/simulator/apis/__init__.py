"""The nine simulated provider APIs, each producing its documented wire shapes itself."""

from __future__ import annotations

from afterimage.simulator.apis.apimart import ApimartApi
from afterimage.simulator.apis.base import ProviderApi
from afterimage.simulator.apis.bfl import BflApi
from afterimage.simulator.apis.crun import CrunApi
from afterimage.simulator.apis.evolink import EvolinkApi
from afterimage.simulator.apis.fal import FalApi
from afterimage.simulator.apis.kie import KieApi, kie_signature
from afterimage.simulator.apis.replicate import ReplicateApi
from afterimage.simulator.apis.toapis import ToapisApi
from afterimage.simulator.apis.xingchao import XingchaoApi
from afterimage.simulator.context import SimContext

API_CLASSES: tuple[type[ProviderApi], ...] = (
    CrunApi,
    KieApi,
    EvolinkApi,
    ApimartApi,
    ToapisApi,
    XingchaoApi,
    ReplicateApi,
    FalApi,
    BflApi,
)


def build_apis(ctx: SimContext) -> dict[str, ProviderApi]:
    """One API object per provider, registered on the context."""
    ctx.apis = {cls.name: cls(ctx) for cls in API_CLASSES}
    return ctx.apis


__all__ = ["API_CLASSES", "ProviderApi", "build_apis", "kie_signature"]
