"""Tests of the two-link arm swing-up (latentrl/ArmSwingup-v0): contract, physics, images, task."""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from latentrl.agents.oracle import OracleMPCAgent, quadratic_weights, true_dynamics
from latentrl.env_check import check_environment
from latentrl.envs import goal_observation, in_goal, wrap_angle
from latentrl.envs.mujoco_arm import ArmSwingupEnv, link_angles
from latentrl.episodes import rollout_metrics, run_episodes

ENV_ID = "latentrl/ArmSwingup-v0"
TORQUES = np.array([4.0, 1.5])  # shoulder, elbow bounds (N m): the motors' gear


@pytest.fixture(scope="module")
def arm() -> Iterator[ArmSwingupEnv]:
    env = ArmSwingupEnv()
    yield env
    env.close()


# ---- an independent model of the arm: Lagrange's equations of two links, RK4 ----


def link_constants(model: mujoco.MjModel) -> dict[str, float]:
    """Masses, lengths, centre-of-mass distances and inertias about the centre of mass (about
    the hinge axis) of the MJCF's two links."""
    upper, lower = (
        mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) for n in ("upper", "lower")
    )
    return {
        "m1": float(model.body_mass[upper]),
        "m2": float(model.body_mass[lower]),
        "l1": float(model.body_pos[lower][2]),
        "a1": float(model.body_ipos[upper][2]),
        "a2": float(model.body_ipos[lower][2]),
        # a capsule along z: its two equal principal moments are those across it
        "i1": float(np.sort(model.body_inertia[upper])[1]),
        "i2": float(np.sort(model.body_inertia[lower])[1]),
        "g": float(-model.opt.gravity[2]),
        "b": float(model.dof_damping[0]),
    }


def gravity_torque(c: dict[str, float], t1: float, t2: float) -> np.ndarray:
    """Gravity's torques ``(2,)`` on the joints of the arm at rest at ``(t1, t2)``."""
    lever2 = c["m2"] * c["a2"] * np.sin(t1 + t2)
    lever1 = (c["m1"] * c["a1"] + c["m2"] * c["l1"]) * np.sin(t1)
    return c["g"] * np.array([lever1 + lever2, lever2])


def arm_acceleration(c: dict[str, float], s: np.ndarray, torque: np.ndarray) -> np.ndarray:
    """``(theta1_ddot, theta2_ddot)`` of state ``s (4,)`` under joint torques ``(2,)``:
    ``M(q) q'' + c(q, q') + b q' = tau + tau_gravity(q)`` for angles from upright, the elbow's
    relative, with the joints' viscous damping ``b``."""
    t1, t2, w1, w2 = s
    j1 = c["m1"] * c["a1"] ** 2 + c["i1"]
    j2 = c["m2"] * c["a2"] ** 2 + c["i2"]
    k = c["m2"] * c["l1"] * c["a2"]
    mass = np.array(
        [
            [j1 + c["m2"] * c["l1"] ** 2 + j2 + 2 * k * np.cos(t2), j2 + k * np.cos(t2)],
            [j2 + k * np.cos(t2), j2],
        ]
    )
    coriolis = k * np.sin(t2) * np.array([-(2 * w1 * w2 + w2**2), w1**2])
    friction = c["b"] * np.array([w1, w2])
    return np.linalg.solve(mass, torque - friction - coriolis + gravity_torque(c, t1, t2))


def arm_step(c: dict[str, float], s: np.ndarray, torque: np.ndarray) -> np.ndarray:
    """Five RK4 steps of 0.01 s of the equations of motion (no wrapping or clipping)."""

    def f(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x[2:], arm_acceleration(c, x, torque)])

    x, h = np.asarray(s, dtype=np.float64), 0.01
    for _ in range(5):
        k1 = f(x)
        k2 = f(x + h / 2 * k1)
        k3 = f(x + h / 2 * k2)
        k4 = f(x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def arm_energy(c: dict[str, float], states: np.ndarray) -> np.ndarray:
    """Kinetic plus potential energy (J) of states ``(n, 4)``."""
    t1, t2, w1, w2 = states.T
    phi_dot = w1 + w2
    kinetic = 0.5 * (c["m1"] * c["a1"] ** 2 + c["i1"]) * w1**2 + 0.5 * c["i2"] * phi_dot**2
    kinetic += (
        0.5
        * c["m2"]
        * (
            c["l1"] ** 2 * w1**2
            + c["a2"] ** 2 * phi_dot**2
            + 2 * c["l1"] * c["a2"] * w1 * phi_dot * np.cos(t2)
        )
    )
    height = (c["m1"] * c["a1"] + c["m2"] * c["l1"]) * np.cos(t1) + c["m2"] * c["a2"] * np.cos(
        t1 + t2
    )
    return kinetic + c["g"] * height


# ---- contract ----


@pytest.mark.filterwarnings("ignore:.*symmetric and normalized space")
def test_gymnasium_and_latentrl_checks_pass() -> None:
    made = gym.make(ENV_ID, render_mode="rgb_array")
    check_env(made.unwrapped)
    made.close()
    results = check_environment(ENV_ID)
    assert len(results) == 9 and all(r.passed for r in results), results


def test_spaces_state_box_and_task_constants(arm) -> None:
    assert arm.observation_space.shape == (2, 64, 64) and arm.observation_space.dtype == np.uint8
    np.testing.assert_array_equal(arm.action_space.low, [-1, -1])
    np.testing.assert_array_equal(arm.action_space.high, [1, 1])
    np.testing.assert_array_equal(arm.model.actuator_gear[:, 0], TORQUES)
    assert arm.state_names == ("theta1", "theta2", "theta1_dot", "theta2_dot")
    assert arm.angle_dims == (0, 1)
    np.testing.assert_array_equal(arm.state_space.high, [np.pi, np.pi, 10.0, 15.0])
    np.testing.assert_array_equal(arm.state_space.low, [-np.pi, -np.pi, -10.0, -15.0])
    assert arm.dt == pytest.approx(0.05)
    assert arm.horizon == 200 and arm.goal_radius == pytest.approx(np.pi / 6)
    assert gym.spec(ENV_ID).max_episode_steps == 200


def test_max_action_scales_both_torque_bounds() -> None:
    env = gym.make(ENV_ID, max_action=0.5).unwrapped
    try:
        np.testing.assert_array_equal(env.action_space.high, [0.5, 0.5])
        state = np.array([[0.4, -0.3, 1.0, 2.0]])
        np.testing.assert_array_equal(
            env.next_states(state, np.array([[3.0, -3.0]])),
            env.next_states(state, np.array([[0.5, -0.5]])),
        )
    finally:
        env.close()


# ---- physics ----


def test_next_states_follow_the_two_link_equations_of_motion(arm) -> None:
    c = link_constants(arm.model)
    assert (c["m1"], c["m2"], c["l1"], c["a1"], c["a2"]) == pytest.approx((1, 1, 0.5, 0.25, 0.25))
    rng = np.random.default_rng(0)
    states = rng.uniform([-3, -3, -4, -6], [3, 3, 4, 6], size=(8, 4))
    actions = rng.uniform(-1.3, 1.3, size=(8, 2))  # some beyond the bound: clipped
    predicted = arm.next_states(states, actions)
    for s, u, nxt in zip(states, actions, predicted, strict=True):
        expected = arm_step(c, s, TORQUES * np.clip(u, -1, 1))
        expected[:2] = wrap_angle(expected[:2])
        np.testing.assert_allclose(nxt, expected, rtol=0, atol=1e-9)


def test_next_states_equal_stepping_the_env(arm) -> None:
    rng = np.random.default_rng(1)
    states = arm.sample_states(5, rng)
    actions = rng.uniform(-1, 1, size=(5, 2)).astype(np.float32)
    predicted = arm.next_states(states, actions)
    for s, u, expected in zip(states, actions, predicted, strict=True):
        arm.reset(options={"state": s})
        _, reward, _, _, info = arm.step(u)
        np.testing.assert_array_equal(info["state"], expected)
        assert reward == pytest.approx(-arm.cost(s[None], u[None])[0], rel=1e-6)


def test_without_torque_the_arm_loses_energy_only_to_joint_damping() -> None:
    fine = ArmSwingupEnv(frame_skip=1)  # 0.01 s steps: the damping's work by the trapezoid rule
    try:
        c = link_constants(fine.model)
        assert c["b"] == pytest.approx(0.1)
        states = [np.array([2.0, -1.0, 0.0, 0.0])]
        for _ in range(300):
            states.append(fine.next_states(states[-1][None], np.zeros((1, 2)))[0])
    finally:
        fine.close()
    path = np.stack(states)
    energy = arm_energy(c, path)
    upright, hanging = arm_energy(c, np.array([[0.0, 0, 0, 0], [np.pi, 0, 0, 0]]))
    assert upright - hanging == pytest.approx(2 * c["g"] * (0.25 + 0.75))  # 19.6 J
    power = c["b"] * np.sum(path[:, 2:] ** 2, axis=1)
    dissipated = np.concatenate([[0.0], np.cumsum((power[1:] + power[:-1]) / 2 * 0.01)])
    assert np.all(np.diff(energy) <= 1e-9)
    assert energy[0] - energy[-1] > 1.0  # the damping matters ...
    np.testing.assert_allclose(energy + dissipated, energy[0], atol=2e-3)  # ... and is all
    assert np.ptp(path[:, 1]) > 1.0  # the elbow swings: a chaotic double pendulum


def test_the_torques_cannot_lift_the_arm_straight_up(arm) -> None:
    """With the upper link horizontal the shoulder's gravity torque, whatever the elbow's angle,
    and with the lower link horizontal the elbow's, exceed the motors' bounds: it must swing."""
    c = link_constants(arm.model)
    data = mujoco.MjData(arm.model)
    loads = []
    for upper, lower in ((np.pi / 2, t) for t in np.linspace(-np.pi, np.pi, 73)):
        data.qpos[:] = [upper, lower]
        data.qvel[:] = 0
        mujoco.mj_forward(arm.model, data)
        loads.append(data.qfrc_bias.copy())  # at rest: gravity's torques, negated
        np.testing.assert_allclose(data.qfrc_bias, -gravity_torque(c, upper, lower), atol=1e-9)
    loads = np.abs(np.array(loads))
    assert loads[:, 0].min() == pytest.approx(c["g"] * 0.5)  # folded: 4.9 N m
    assert loads[:, 0].min() > 1.2 * TORQUES[0]
    assert loads[:, 1].max() == pytest.approx(c["g"] * 0.25)  # lower link horizontal: 2.45
    assert loads[:, 1].max() > 1.6 * TORQUES[1]


def test_fast_states_stay_valid(arm) -> None:
    state = np.array([[0.0, 0.0, 9.9, 14.9]])
    for _ in range(20):
        state = arm.next_states(state, np.array([[1.0, 1.0]]))
        assert arm.is_valid(state)[0]


def test_the_oracle_plans_on_the_arm_dynamics(arm) -> None:
    c = link_constants(arm.model)
    dynamics = true_dynamics(arm)
    Q, R = quadratic_weights(arm)
    np.testing.assert_allclose(Q, np.diag([1.0, 1.0, 0.1, 0.1]), atol=1e-8)
    np.testing.assert_allclose(R, 1e-3 * np.eye(2), atol=1e-8)
    s, u = np.array([[0.3, -0.4, 1.0, -2.0]]), np.array([[0.2, -0.5]])
    A, B, _ = dynamics.jacobians(s, u)
    h = 1e-5
    expected_A = np.stack(
        [
            (arm_step(c, s[0] + h * e, TORQUES * u[0]) - arm_step(c, s[0] - h * e, TORQUES * u[0]))
            / (2 * h)
            for e in np.eye(4)
        ],
        axis=1,
    )
    expected_B = np.stack(
        [
            (
                arm_step(c, s[0], TORQUES * (u[0] + h * e))
                - arm_step(c, s[0], TORQUES * (u[0] - h * e))
            )
            / (2 * h)
            for e in np.eye(2)
        ],
        axis=1,
    )
    np.testing.assert_allclose(A[0], expected_A, atol=1e-6)
    np.testing.assert_allclose(B[0], expected_B, atol=1e-6)


# ---- images ----


def test_earlier_frame_is_rendered_at_qpos_minus_qvel_dt(arm) -> None:
    states = np.array([[0.5, -1.0, 2.0, 6.0], [-2.8, 0.4, -3.0, 1.0]])
    earlier = states.copy()
    earlier[:, :2] = states[:, :2] - states[:, 2:] * arm.dt
    earlier[:, 2:] = 0
    still = states.copy()
    still[:, 2:] = 0
    obs, at_rest, at_earlier = arm.observe(states), arm.observe(still), arm.observe(earlier)
    np.testing.assert_array_equal(obs[:, 1], at_rest[:, 1])
    np.testing.assert_array_equal(obs[:, 0], at_earlier[:, 1])
    np.testing.assert_array_equal(at_rest[:, 0], at_rest[:, 1])  # at rest both frames agree
    assert np.all(np.sum(obs[:, 0] != obs[:, 1], axis=(1, 2)) > 10)


def test_frames_change_with_each_angle(arm) -> None:
    base = np.array([0.7, 0.5, 0.0, 0.0])
    moved_shoulder, moved_elbow = base.copy(), base.copy()
    moved_shoulder[0] += 0.3
    moved_elbow[1] += 0.3
    img, shoulder, elbow = arm.observe(np.stack([base, moved_shoulder, moved_elbow]))[:, 1]
    assert np.sum(img != shoulder) > 30 and np.sum(img != elbow) > 15
    # moving the elbow leaves the upper link where it was: fewer pixels change
    assert np.sum(img != elbow) < np.sum(img != shoulder)


def test_the_links_are_told_apart_and_point_where_their_angles_say(arm) -> None:
    upper_right = arm.observe(np.array([[np.pi / 2, -np.pi / 2, 0.0, 0.0]]))[0, 1].astype(int)
    # The shoulder sits in the middle; the upper link runs right, the lower link up from its end.
    mid = upper_right.shape[0] // 2
    row = upper_right[mid - 1 : mid + 2, mid + 3 : mid + 10]  # on the upper link
    column = upper_right[mid - 20 : mid - 6, mid + 12 : mid + 15]  # on the lower link
    assert 120 <= row.max() <= 180  # light gray
    assert column.max() >= 240  # white
    assert upper_right[:, : mid - 3].max() == 0  # nothing on the left
    assert upper_right[mid + 3 :].max() == 0  # nothing below


# ---- task ----


def test_start_states_hang_and_the_goal_is_upright(arm) -> None:
    starts = arm.sample_start_states(500, np.random.default_rng(2))
    assert np.all(np.abs(wrap_angle(starts[:, 0] - np.pi)) <= 0.2)
    assert np.all(np.abs(starts[:, 1]) <= 0.2) and np.all(starts[:, 2:] == 0)
    assert np.all(arm.is_valid(starts))
    assert np.all(arm.goal_distance(starts) > np.pi - 0.41)
    assert not np.any(in_goal(arm, starts)) and in_goal(arm, arm.goal_state())[0]
    goal_img, start_img = goal_observation(arm)[1].astype(int), arm.observe(starts[:1])[0, 1]
    assert np.sum(np.abs(goal_img - start_img.astype(int)) > 100) > 40


def test_goal_distance_is_the_larger_link_angle(arm) -> None:
    states = np.array(
        [[0.3, -0.6, 0, 0], [0.2, 0.5, 5, 5], [-0.4, 0.1, 0, 0], [3.0, 0.5, 0, 0], [0, np.pi, 0, 0]]
    )
    np.testing.assert_allclose(
        link_angles(states),
        [[0.3, -0.3], [0.2, 0.7], [-0.4, -0.3], [3.0, 3.5 - 2 * np.pi], [0, -np.pi]],
    )
    np.testing.assert_allclose(arm.goal_distance(states), [0.3, 0.7, 0.4, 3.0, np.pi])
    np.testing.assert_array_equal(in_goal(arm, states), [True, False, True, False, False])


def test_cost(arm) -> None:
    state = np.array([[0.5, -3.5, 2.0, -1.0]])  # theta2 wraps to 2 pi - 3.5
    expected = 0.25 + (2 * np.pi - 3.5) ** 2 + 0.1 * (4 + 1) + 1e-3 * (1 + 0.25)
    assert arm.cost(state, np.array([[3.0, -0.5]]))[0] == pytest.approx(expected)
    assert arm.cost(arm.goal_state()[None], np.zeros((1, 2)))[0] == 0.0


@pytest.mark.slow
def test_the_oracle_swings_the_arm_up_and_holds_it() -> None:
    env = gym.make(ENV_ID)
    task = env.unwrapped
    try:
        starts = task.sample_start_states(2, np.random.default_rng(0))
        agent = OracleMPCAgent(task, horizon=40, seed=0)
        rollout = run_episodes(ENV_ID, task, agent, starts, 120)
        metrics = rollout_metrics(task, rollout)
        assert np.all(metrics["success"] == 1)
        assert np.all(metrics["steps_in_goal"] > 0.25)  # up within 90 steps, then held
    finally:
        env.close()
