"""A two-link arm swing-up seen in pixels: both joints torque-driven, written as an untuned task.

``latentrl/ArmSwingup-v0`` is the MuJoCo swing-up of :mod:`latentrl.envs.mujoco_swingup` (the
same control step, rendering, state box, clipping, cost form and keyword arguments) on the model
``envs/assets/arm.xml``: two uniform 1 kg, 0.5 m links in a vertical plane on lightly damped
hinges (0.1 N m s/rad), a motor on the shoulder and one on the elbow.

* **State** ``(theta1, theta2, theta1_dot, theta2_dot)``: ``theta1`` the upper link's angle from
  upright, ``theta2`` the elbow's angle (the lower link relative to the upper one), both wrapped
  to [-pi, pi); ``(0, 0)`` is upright, ``(pi, 0)`` hangs straight down.
* **Action** ``(2,)`` in [-1, 1]: the shoulder's and the elbow's torque as a fraction of their
  bounds, 4 and 1.5 N m (the motors' gear in the MJCF; the ``max_action`` kwarg scales both).
  Each bound lies below gravity's torque on its joint with its link horizontal (at least 4.9
  and 2.45 N m), so the arm cannot be lifted straight up: it must swing.
* **Task**: start hanging at rest, ``theta1 = pi +- 0.2``, ``theta2 = 0 +- 0.2``; goal upright
  at rest; ``goal_distance`` is the larger of the two links' angles from upright
  (``|theta1|`` and ``|theta1 + theta2|``, wrapped), goal radius pi/6 (both links within 30
  degrees of upright, the other swing-ups' radius for their one pole); horizon 200 steps (10 s,
  as the other swing-ups: time to swing up, catch and hold); ``cost(s, u) = theta1^2 +
  theta2^2 + 0.1 (theta1_dot^2 + theta2_dot^2) + 0.001 |u|^2`` with the angles wrapped.
  The task's keyword arguments (start box, goal radius, horizon) and ``max_action``,
  ``frame_skip`` and ``image_size`` are those of the other MuJoCo swing-ups.
"""

from __future__ import annotations

import numpy as np

from latentrl.envs.contract import wrap_angle
from latentrl.envs.mujoco_swingup import SwingupEnv, SwingupTask
from latentrl.envs.task_options import sample_start_box

GOAL_RADIUS = float(np.pi / 6)
"""Both links within this angle (rad) of upright."""
HORIZON = 200
"""Control steps of an episode (10 s)."""
START_SPREAD = 0.2
"""Half-width (rad) of the start box around hanging straight down, for each angle."""

ARM = SwingupTask(
    "arm.xml",
    state_names=("theta1", "theta2", "theta1_dot", "theta2_dot"),
    image_size=64,
    max_velocity=(10.0, 15.0),
    state_weights=(1.0, 1.0, 0.1, 0.1),
)


def link_angles(states: np.ndarray) -> np.ndarray:
    """Each link's angle from upright ``(n, 2)``, wrapped, of arm states ``(n, 4)``: the upper
    link's ``theta1`` and the lower link's ``theta1 + theta2``."""
    arr = np.atleast_2d(states)
    return wrap_angle(np.cumsum(arr[:, :2], axis=1))


class ArmSwingupEnv(SwingupEnv):
    """Two-link arm swing-up: state ``(theta1, theta2, theta1_dot, theta2_dot)``, action
    ``(2,)`` in [-1, 1] (shoulder and elbow torques as fractions of their bounds), observation
    uint8 ``(2, 64, 64)``. Model: ``envs/assets/arm.xml``; the task is in the module docstring.
    """

    task = ARM
    horizon = HORIZON
    goal_radius = GOAL_RADIUS

    def sample_start_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` states ``(n, 4)`` uniform in the start box if one was given; else hanging at
        rest, ``theta1 = pi +- 0.2`` (wrapped) and ``theta2 = 0 +- 0.2``."""
        if self._start is not None:
            return sample_start_box(self._start, n, rng, self.angle_dims, self.is_valid)
        states = np.zeros((n, 4))
        states[:, 0] = wrap_angle(np.pi + rng.uniform(-START_SPREAD, START_SPREAD, size=n))
        states[:, 1] = rng.uniform(-START_SPREAD, START_SPREAD, size=n)
        return states

    def goal_distance(self, states: np.ndarray) -> np.ndarray:
        """The larger of the two links' angles from upright (rad) of each state ``(n, 4)``,
        ``(n,)``; the velocities do not count."""
        return np.max(np.abs(link_angles(states)), axis=1)
