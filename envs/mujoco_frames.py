"""Offscreen frames of a MuJoCo model's fixed camera, in gray-scale, for observations.

:class:`FrameRenderer` poses its own ``MjData`` at given configurations and renders the model's
camera ``CAMERA`` with the GL backend that ``MUJOCO_GL`` names (:func:`gl_context`);
:func:`luminance` turns the RGB images gray. Used by :mod:`latentrl.envs.mujoco_swingup`.
"""

from __future__ import annotations

import os
from typing import Any

import mujoco
import numpy as np

CAMERA = "fixed"
"""Name of the camera that every model defines."""

# Shadows alone make software (Mesa) rendering several times slower; the models have no lights
# that cast them, and these flags keep it so even if a light is added.
_FLAGS_OFF = (
    mujoco.mjtRndFlag.mjRND_SHADOW,
    mujoco.mjtRndFlag.mjRND_REFLECTION,
    mujoco.mjtRndFlag.mjRND_SKYBOX,
    mujoco.mjtRndFlag.mjRND_FOG,
    mujoco.mjtRndFlag.mjRND_HAZE,
)


def gl_context(size: int) -> Any:
    """A GL context for offscreen frames up to ``size`` pixels, of the backend that ``MUJOCO_GL``
    names now. mujoco picks its default backend once, when first imported; ``latentrl.envs``
    sets ``MUJOCO_GL=egl`` on machines without a display, which misses a program that imported
    mujoco first, so the backend is chosen here instead."""
    backend = os.environ.get("MUJOCO_GL", "").lower()
    if backend == "egl":
        from mujoco.egl import GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
    else:
        from mujoco.gl_context import GLContext  # mujoco's own choice: GLFW on Linux
    return GLContext(size, size)


class FrameRenderer:
    """Renders a model's fixed camera at given configurations into square RGB images.

    It poses its own MjData, so the simulation it is asked about is never touched, and owns one
    GL context, made current for every batch, so several renderers can share a process.

    Reading pixels back dominates the cost of a small frame on a software renderer (it waits for
    the rasteriser and resolves the multisampled buffer), so the frames of one observation are
    drawn side by side and read back together. Every observation uses the same tiles: pixels
    depend slightly on a tile's position (rounding in the rasteriser), and an observation must
    not depend on the batch it was rendered in.
    """

    def __init__(self, model: mujoco.MjModel, size: int) -> None:
        self._gl: Any = None  # close() must work whatever __init__ got to
        self._model = model
        self._data = mujoco.MjData(model)
        self._size = size
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA)
        if self._camera.fixedcamid < 0:
            raise ValueError(f"the model defines no camera named {CAMERA!r}")
        fits = model.vis.global_.offheight >= size
        self._per_read = model.vis.global_.offwidth // size if fits else 0
        if self._per_read < 1:
            raise ValueError(f"frames of {size} pixels exceed the model's offscreen buffer")
        self._option = mujoco.MjvOption()
        self._scene = mujoco.MjvScene(model, maxgeom=100)
        for flag in _FLAGS_OFF:
            self._scene.flags[flag] = False
        self._gl = gl_context(size)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)

    def render(self, qpos: np.ndarray) -> np.ndarray:
        """uint8 ``(n, k, size, size, 3)`` images of ``n`` groups of ``k`` configurations
        ``qpos`` (n, k, nq); each group is drawn side by side and read back at once, in reads
        of as many frames as fit the offscreen buffer's width (frame j in tile j mod that)."""
        if self._gl is None:
            raise RuntimeError("the renderer is closed")
        n, k = qpos.shape[:2]
        size = self._size
        images = np.empty((n, k, size, size, 3), dtype=np.uint8)
        self._gl.make_current()
        for i in range(n):
            for first in range(0, k, self._per_read):
                group = qpos[i, first : first + self._per_read]
                images[i, first : first + len(group)] = self._read_group(group)
        return images

    def _read_group(self, qpos: np.ndarray) -> np.ndarray:
        """uint8 ``(t, size, size, 3)`` of ``t <= per_read`` configurations ``qpos`` (t, nq),
        drawn in tiles 0..t-1 and read back at once; the GL context must be current."""
        size, t = self._size, len(qpos)
        pixels = np.empty((size, t * size, 3), dtype=np.uint8)
        for j in range(t):
            self._data.qpos[:] = qpos[j]
            # Poses of bodies and cameras are all a frame needs; no dynamics.
            mujoco.mj_kinematics(self._model, self._data)
            mujoco.mj_camlight(self._model, self._data)
            mujoco.mjv_updateScene(
                self._model,
                self._data,
                self._option,
                None,
                self._camera,
                mujoco.mjtCatBit.mjCAT_ALL,
                self._scene,
            )
            mujoco.mjr_render(mujoco.MjrRect(j * size, 0, size, size), self._scene, self._context)
        mujoco.mjr_readPixels(pixels, None, mujoco.MjrRect(0, 0, t * size, size), self._context)
        # GL's rows run bottom-up.
        return pixels[::-1].reshape(size, t, size, 3).swapaxes(0, 1)

    def close(self) -> None:
        """Free the GL resources; safe to call twice."""
        if self._gl is None:
            return
        with self._gl.as_current():
            self._context.free()
        self._gl.free()
        self._gl = None

    def __del__(self) -> None:
        self.close()


def luminance(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``(..., H, W)`` gray images of uint8 RGB images ``(..., H, W, 3)``: BT.601 luma in
    1/256 steps (the weights sum to 256, so gray materials keep their value)."""
    # Channel by channel in uint16: an integer matmul has no BLAS and is twice as slow.
    red, green, blue = (rgb[..., c].astype(np.uint16) for c in range(3))
    return ((77 * red + 150 * green + 29 * blue + 128) >> 8).astype(np.uint8)
