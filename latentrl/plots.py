"""Images the logger records: pure functions returning uint8 arrays, no display needed.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot), so nothing depends on a
display, a global backend or pyplot's figure registry.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

_SEPARATOR_GREY = 128
_LABEL_PAD = 4
_DPI = 100


def image_grid(
    rows: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    scale: int = 1,
    separator: int = 2,
) -> np.ndarray:
    """Grid of observation stacks: one row per array, one column per sample.

    rows: R arrays of shape (N, k, H, W) (or (N, H, W) for k = 1), uint8 or float in [0, 1],
    e.g. [observations, reconstructions, one-step predictions]. A sample's k frames sit side
    by side, samples are split by `separator` grey pixels, and each frame is enlarged `scale`
    times (nearest neighbour) so small renders stay readable. With `labels`, a white margin of
    width L on the left names the rows.

    Returns uint8 (R*H*scale + (R-1)*separator, L + N*k*W*scale + (N-1)*separator).
    """
    stacks = [_as_uint8_stack(row) for row in rows]
    if not stacks:
        raise ValueError("image_grid needs at least one row")
    if any(stack.shape != stacks[0].shape for stack in stacks):
        shapes = ", ".join(str(stack.shape) for stack in stacks)
        raise ValueError(f"image_grid rows must share one shape (N, k, H, W); got {shapes}")
    if labels is not None and len(labels) != len(stacks):
        raise ValueError(f"got {len(labels)} labels for {len(stacks)} rows")
    lines = [_grid_row(stack, scale, separator) for stack in stacks]
    grid = _join(lines, separator, axis=0)
    if labels is None:
        return grid
    row_height = lines[0].shape[0]
    return np.concatenate([_label_margin(labels, row_height, separator), grid], axis=1)


def _as_uint8_stack(row: np.ndarray) -> np.ndarray:
    """(N, k, H, W) uint8 from uint8 or [0, 1] floats; (N, H, W) becomes k = 1."""
    row = np.asarray(row)
    if row.ndim == 3:
        row = row[:, None]
    if row.ndim != 4:
        raise ValueError(f"image_grid rows must be (N, k, H, W) or (N, H, W), got {row.shape}")
    if row.dtype == np.uint8:
        return row
    return np.round(np.clip(row, 0.0, 1.0) * 255.0).astype(np.uint8)


def _grid_row(stack: np.ndarray, scale: int, separator: int) -> np.ndarray:
    """(N, k, H, W) -> (H*scale, N*k*W*scale + (N-1)*separator)."""
    samples = []
    for frames in stack:
        sample = np.concatenate(list(frames), axis=1)
        samples.append(sample.repeat(scale, axis=0).repeat(scale, axis=1))
    return _join(samples, separator, axis=1)


def _join(parts: Sequence[np.ndarray], separator: int, axis: int) -> np.ndarray:
    """Concatenate 2-D parts along `axis` with grey bars `separator` pixels thick."""
    shape = list(parts[0].shape)
    shape[axis] = separator
    bar = np.full(shape, _SEPARATOR_GREY, dtype=np.uint8)
    pieces = [piece for part in parts for piece in (bar, part)][1:]
    return np.concatenate(pieces, axis=axis)


def _label_margin(labels: Sequence[str], row_height: int, separator: int) -> np.ndarray:
    """White (rows' height, L) margin with each label vertically centred on its row."""
    font = ImageFont.load_default(size=max(8, min(12, row_height - 2)))
    width = max(int(np.ceil(font.getlength(label))) for label in labels) + 2 * _LABEL_PAD
    height = len(labels) * row_height + (len(labels) - 1) * separator
    margin = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(margin)
    for index, label in enumerate(labels):
        centre = index * (row_height + separator) + row_height / 2
        draw.text((_LABEL_PAD, centre), label, fill=0, font=font, anchor="lm")
    return np.asarray(margin)


def latent_map(
    latent_means: np.ndarray,
    colour_values: np.ndarray | Mapping[str, np.ndarray],
    title: str = "",
    angles: Collection[str] = ("theta",),
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Scatter of latent means coloured by the true state, one panel per colour array.

    latent_means: (N, n), n >= 2. n = 2 is drawn as is and n = 3 in 3-D; for n > 3 the
    points are projected on their first three principal components (a 3-D view keeps more
    of the structure E2C latents have, e.g. the pendulum's cylinder, than two PCs would).
    colour_values: (N,) or {name: (N,)}. Names in `angles` are angles in radians, drawn
    with the cyclic 'twilight' map over [-pi, pi) so that -pi and pi get one colour; other
    values use 'coolwarm' over their range. size: (height, width) in pixels of the whole
    image, by default 360 high and 360 wide per panel.

    Returns uint8 (height, width, 3).
    """
    points, axis_names, note = _projection(np.asarray(latent_means, dtype=np.float64))
    colours = colour_values if isinstance(colour_values, Mapping) else {"": colour_values}
    for name, values in colours.items():
        if np.shape(values) != (points.shape[0],):
            raise ValueError(
                f"colour values {name!r} must have shape ({points.shape[0]},), "
                f"got {np.shape(values)}"
            )
    height, width = size if size is not None else (360, 360 * len(colours))
    # +0.5 px: Agg truncates figsize * dpi, and w / dpi * dpi can land just below w.
    inches = ((width + 0.5) / _DPI, (height + 0.5) / _DPI)
    figure = Figure(figsize=inches, dpi=_DPI, layout="constrained")
    for index, (name, values) in enumerate(colours.items()):
        _scatter_panel(figure, index, len(colours), points, axis_names, name, values, angles)
    if title or note:
        figure.suptitle(" ".join(part for part in (title, note) if part))
    return _render(figure)


def _projection(means: np.ndarray) -> tuple[np.ndarray, list[str], str]:
    """(N, n) -> points (N, min(n, 3)), their axis names and a note for the title."""
    if means.ndim != 2 or means.shape[1] < 2:
        raise ValueError(f"latent_map needs latent means of shape (N, n >= 2), got {means.shape}")
    n = means.shape[1]
    if n <= 3:
        return means, [f"z{i + 1}" for i in range(n)], ""
    centred = means - means.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    explained = singular**2 / max(float(np.sum(singular**2)), 1e-12)
    shares = ", ".join(f"{100 * share:.0f}%" for share in explained[:3])
    note = f"(first 3 PCs of {n}-D latents: {shares} of variance)"
    return centred @ components[:3].T, ["PC1", "PC2", "PC3"], note


def _scatter_panel(
    figure: Figure,
    index: int,
    panels: int,
    points: np.ndarray,
    axis_names: list[str],
    name: str,
    values: np.ndarray,
    angles: Collection[str],
) -> None:
    three_d = points.shape[1] == 3
    axes = figure.add_subplot(1, panels, index + 1, projection="3d" if three_d else None)
    values = np.asarray(values, dtype=np.float64)
    if name in angles:
        values = (values + np.pi) % (2 * np.pi) - np.pi
        style = dict(cmap="twilight", vmin=-np.pi, vmax=np.pi)
    else:
        style = dict(cmap="coolwarm", vmin=float(values.min()), vmax=float(values.max()))
    scatter = axes.scatter(*points.T, c=values, s=6, **style)
    for set_label, label in zip(
        (axes.set_xlabel, axes.set_ylabel, getattr(axes, "set_zlabel", None)),
        axis_names,
        strict=False,
    ):
        set_label(label)
    axes.set_title(name)
    figure.colorbar(scatter, ax=axes, orientation="horizontal", shrink=0.7)


def _render(figure: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def state_plot(
    states: Mapping[str, np.ndarray],
    goal_distances: Mapping[str, np.ndarray],
    state_names: Sequence[str],
    angle_dims: Collection[int],
    goal_radius: float,
) -> np.ndarray:
    """Goal distance and each state coordinate over time (rows), one column per agent.

    states: agent -> ``(episodes, T, d)``; goal_distances: agent -> ``(episodes, T)``. A line
    per episode; dashed lines at the goal radius and half of it. uint8 ``(H, W, 3)``.
    """
    names = ["goal distance", *state_names]
    cols = len(states)
    figure = Figure(figsize=(3.6 * cols, 1.8 * len(names)), dpi=_DPI, layout="constrained")
    axes = figure.subplots(len(names), cols, squeeze=False, sharex=True)
    for c, (agent, trajectories) in enumerate(states.items()):
        steps = trajectories.shape[1]
        series = [goal_distances[agent], *trajectories.transpose(2, 0, 1)]
        for i in angle_dims:  # no vertical line where a wrapped angle jumps by 2π
            angle = series[1 + i].copy()
            angle[:, 1:][np.abs(np.diff(angle, axis=1)) > np.pi] = np.nan
            series[1 + i] = angle
        for row, values in enumerate(series):
            ax = axes[row, c]
            ax.plot(np.arange(steps), values.T, linewidth=0.8, alpha=0.7)
            if c == 0:
                ax.set_ylabel(names[row])
            if row == 0:
                ax.set_title(agent)
                for radius in (goal_radius, goal_radius / 2):
                    ax.axhline(radius, color="black", linestyle="--", linewidth=0.8)
        axes[-1, c].set_xlabel("step")
    return _render(figure)
