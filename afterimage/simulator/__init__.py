"""`afterimage simulate`: local stand-ins for the nine providers' APIs, callbacks and CDNs.

Written from the documented wire shapes (docs: spec/providers.md), independently of
`afterimage.providers`, so that it also checks the adapters.
"""

from afterimage.simulator.app import create_app
from afterimage.simulator.config import PROVIDERS, SimConfig
from afterimage.simulator.faults import Faults
from afterimage.simulator.server import RunningSimulator, run_simulator

__all__ = ["PROVIDERS", "Faults", "RunningSimulator", "SimConfig", "create_app", "run_simulator"]
