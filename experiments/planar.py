"""E2C's planar system (latentrl/Planar-v0): steer a point around six obstacles to the goal
from one 40x40 image, 3-D latent space (E2C used 2; 3 planned better here, docs/benchmarks.md).

Collects the dataset once, trains and evaluates one run per seed, then prints mean ± standard
error across seeds for the latent agent beside the oracle and random agents, and writes a bar
plot. ``--help`` lists the options.

    python experiments/planar.py --preset debug --seeds 0 1 2     # minutes on a CPU
    python experiments/planar.py --seeds 0 1 2 --wandb online      # the full preset
"""

import sys

from latentrl.experiment_cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main("planar"))
