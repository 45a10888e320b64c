"""`python -m afterimage.simulator`: the `simulate` command on its own."""

from afterimage.simulator.cli import simulate

if __name__ == "__main__":
    simulate()
