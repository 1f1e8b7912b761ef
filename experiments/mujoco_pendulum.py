"""MuJoCo pendulum swing-up (latentrl/PendulumSwingup-v0): torque-limited, from two 48x48
rendered frames.

Collects the dataset once, trains and evaluates one run per seed, then prints mean ± standard
error across seeds for the latent agent beside the oracle and random agents, and writes a bar
plot. ``--help`` lists the options.

    python experiments/mujoco_pendulum.py --preset debug --seeds 0 1 2     # minutes on a CPU
    python experiments/mujoco_pendulum.py --seeds 0 1 2 --wandb online      # the full preset
"""

import sys

from latentrl.experiment_cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main("mujoco_pendulum"))
