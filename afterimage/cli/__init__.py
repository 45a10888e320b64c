"""The `afterimage` command: the group in base, commands by topic in run and tasks."""

from afterimage.cli import run, tasks
from afterimage.cli.base import main
from afterimage.simulator.cli import simulate

main.add_command(simulate)
__all__ = ["main", "run", "tasks"]
