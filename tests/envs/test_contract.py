"""Helpers of the env contract shared by the numpy envs."""

from __future__ import annotations

import pytest

from latentrl.envs.contract import check_render_mode
from latentrl.envs.pendulum import PixelPendulumEnv
from latentrl.envs.planar import PlanarEnv


@pytest.mark.parametrize("env_class", [PixelPendulumEnv, PlanarEnv])
def test_unsupported_render_mode_is_refused_with_the_choices(env_class: type) -> None:
    assert env_class(render_mode="rgb_array").render_mode == "rgb_array"
    assert env_class().render_mode is None
    with pytest.raises(ValueError, match=r"render_mode 'human' is not supported; use one of "):
        env_class(render_mode="human")


def test_check_render_mode_names_the_supported_modes() -> None:
    metadata = {"render_modes": ["rgb_array"]}
    assert check_render_mode(None, metadata) is None
    with pytest.raises(ValueError, match=r"\['rgb_array'\] or None"):
        check_render_mode("ansi", metadata)
