"""Tests for latentrl.plots: grid layout arithmetic and latent maps as RGB arrays."""

from __future__ import annotations

import numpy as np
import pytest

from latentrl.plots import image_grid, latent_map

GREY = 128  # separator colour


def _frames(n: int, k: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, k, h, w), dtype=np.uint8)


@pytest.mark.parametrize(
    ("rows", "n", "k", "h", "w", "scale", "sep"),
    [(3, 5, 2, 8, 10, 1, 2), (1, 1, 1, 4, 4, 1, 2), (2, 4, 3, 6, 5, 3, 1), (3, 2, 2, 8, 8, 2, 0)],
)
def test_image_grid_shape_arithmetic(
    rows: int, n: int, k: int, h: int, w: int, scale: int, sep: int
) -> None:
    grid = image_grid(
        [_frames(n, k, h, w, seed=r) for r in range(rows)], scale=scale, separator=sep
    )
    assert grid.dtype == np.uint8
    assert grid.shape == (rows * h * scale + (rows - 1) * sep, n * k * w * scale + (n - 1) * sep)


def test_image_grid_places_frames_samples_and_separators() -> None:
    top, bottom = _frames(3, 2, 4, 5, seed=1), _frames(3, 2, 4, 5, seed=2)
    grid = image_grid([top, bottom], separator=2)
    # sample j, frame f of row r starts at (r * (4 + 2), j * (2 * 5 + 2) + f * 5)
    np.testing.assert_array_equal(grid[0:4, 0:5], top[0, 0])
    np.testing.assert_array_equal(grid[0:4, 5:10], top[0, 1])  # frames touch, no separator
    np.testing.assert_array_equal(grid[0:4, 12:17], top[1, 0])
    np.testing.assert_array_equal(grid[6:10, 29:34], bottom[2, 1])
    assert (grid[4:6] == GREY).all() and (grid[:, 10:12] == GREY).all()


def test_image_grid_scales_floats_and_accepts_single_frames() -> None:
    floats = np.array([[[0.0, 0.5], [1.0, 2.0]]])  # (N=1, H=2, W=2), 2.0 is clipped
    grid = image_grid([floats], scale=2)
    expected = np.array([[0, 0, 128, 128], [0, 0, 128, 128], [255] * 4, [255] * 4])
    np.testing.assert_array_equal(grid, expected)


def test_image_grid_labels_add_a_margin_on_the_left() -> None:
    rows = [_frames(4, 2, 16, 16, seed=s) for s in range(3)]
    plain = image_grid(rows, scale=2)
    labelled = image_grid(rows, labels=["observation", "reconstruction", "one-step"], scale=2)
    margin = labelled.shape[1] - plain.shape[1]
    assert labelled.shape[0] == plain.shape[0] and margin > 40
    np.testing.assert_array_equal(labelled[:, margin:], plain)
    for row in range(3):  # dark text pixels in each row's band of the white margin
        band = labelled[row * (32 + 2) : row * (32 + 2) + 32, :margin]
        assert (band < 100).sum() > 20 and (band == 255).mean() > 0.5


@pytest.mark.parametrize(
    ("rows", "labels", "message"),
    [
        ([_frames(2, 2, 4, 4), _frames(3, 2, 4, 4)], None, "must share one shape"),
        ([np.zeros((4, 4))], None, r"\(N, k, H, W\) or \(N, H, W\)"),
        ([_frames(2, 2, 4, 4)], ["a", "b"], "2 labels for 1 rows"),
        ([], None, "at least one row"),
    ],
)
def test_image_grid_rejects_bad_input(rows: list, labels: list | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_grid(rows, labels=labels)


def _pendulum_latents(n: int, points: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    theta = rng.uniform(-np.pi, np.pi, points)
    theta_dot = rng.uniform(-8.0, 8.0, points)
    z = np.zeros((points, n))
    z[:, :2] = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    if n > 2:
        z[:, 2] = theta_dot / 8.0
        z[:, 3:] = 0.1 * rng.normal(size=(points, n - 3))
    return z, theta, theta_dot


def _coloured_fraction(image: np.ndarray) -> float:
    """Share of pixels that are clearly not grey (points, colour bars)."""
    channels = image.astype(int)
    return float((channels.max(axis=2) - channels.min(axis=2) > 60).mean())


@pytest.mark.parametrize("n", [2, 3, 8])
def test_latent_map_returns_rgb_of_requested_size(n: int) -> None:
    z, theta, theta_dot = _pendulum_latents(n)
    image = latent_map(z, {"theta": theta, "theta_dot": theta_dot}, "pendulum", size=(300, 500))
    assert image.dtype == np.uint8 and image.shape == (300, 500, 3)
    assert 0.01 < _coloured_fraction(image) < 0.5


def test_latent_map_default_size_is_one_square_panel_per_colour_array() -> None:
    z, theta, theta_dot = _pendulum_latents(3)
    assert latent_map(z, theta).shape == (360, 360, 3)
    assert latent_map(z, {"theta": theta, "theta_dot": theta_dot}).shape == (360, 720, 3)


def test_latent_map_wraps_angles_onto_one_colour_cycle() -> None:
    z, theta, _ = _pendulum_latents(2)
    same = latent_map(z, {"theta": theta}, size=(200, 200))
    shifted = latent_map(z, {"theta": theta + 2 * np.pi}, size=(200, 200))
    np.testing.assert_array_equal(same, shifted)
    assert not np.array_equal(same, latent_map(z, {"theta": theta}, angles=(), size=(200, 200)))


@pytest.mark.parametrize(
    ("z", "colours", "message"),
    [
        (np.zeros((10, 1)), np.zeros(10), r"shape \(N, n >= 2\)"),
        (np.zeros((10, 3)), np.zeros(9), r"'' must have shape \(10,\)"),
        (np.zeros((10, 3)), {"theta": np.zeros((10, 2))}, "'theta' must have shape"),
    ],
)
def test_latent_map_rejects_bad_shapes(z: np.ndarray, colours: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        latent_map(z, colours)  # type: ignore[arg-type]
