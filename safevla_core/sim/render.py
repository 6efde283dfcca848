"""Offscreen CPU rendering of a MuJoCo model's fixed cameras (EGL or OSMesa).

Follows ENVIRONMENT.md: ``MUJOCO_GL`` (the simulator config's ``gl_backend`` when unset; egl is
the fastest on llvmpipe), shadows, reflections and skybox off after every scene update,
``LP_NUM_THREADS=1`` unless set. :class:`safevla_core.sim.mujoco_backend.MujocoBackend` creates
one :class:`OffscreenRenderer` at its first render and reuses it across resets.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def configure_gl_env(gl_backend: str) -> str:
    """Set ``MUJOCO_GL`` (if unset) and ``LP_NUM_THREADS`` (if unset); return the backend."""
    os.environ.setdefault("MUJOCO_GL", gl_backend)
    os.environ.setdefault("LP_NUM_THREADS", "1")
    backend = os.environ["MUJOCO_GL"].strip().lower()
    if backend not in ("egl", "osmesa"):
        raise ValueError(f"MUJOCO_GL={backend!r}: the embedded simulator needs egl or osmesa")
    return backend


class OffscreenRenderer:
    """One GL context for a backend's lifetime; one MuJoCo render context per model.

    Args:
        gl_backend: ``"egl"`` or ``"osmesa"``, used when ``MUJOCO_GL`` is unset.
        width: Image width, pixels.
        height: Image height, pixels.

    Raises:
        ValueError: If ``MUJOCO_GL`` names another backend.
    """

    def __init__(self, gl_backend: str, width: int, height: int) -> None:
        backend = configure_gl_env(gl_backend)
        if backend == "egl":
            from mujoco.egl import GLContext
        else:
            from mujoco.osmesa import GLContext
        self._width, self._height = width, height
        self._ctx = GLContext(width, height)
        self._ctx.make_current()
        self._mjr: Any = None
        self._scene: Any = None
        self._model: Any = None
        self._buf = np.empty((height, width, 3), dtype=np.uint8)

    def set_model(self, model: Any) -> None:
        """Make ``model`` (an ``mujoco.MjModel``) the one :meth:`render` draws."""
        import mujoco

        self._ctx.make_current()
        if self._mjr is not None:
            self._mjr.free()
        self._model = model
        self._mjr = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._mjr)
        self._scene = mujoco.MjvScene(model, maxgeom=max(1000, 2 * model.ngeom))
        self._opt = mujoco.MjvOption()
        self._pert = mujoco.MjvPerturb()
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, self._width, self._height)

    def render(self, data: Any, camera_id: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB image of ``data`` (``mujoco.MjData``) from a fixed camera.

        Shadows, reflections and the skybox are switched off after every scene update.
        """
        import mujoco

        self._ctx.make_current()  # several backends may share a process (thread)
        self._cam.fixedcamid = camera_id
        mujoco.mjv_updateScene(
            self._model,
            data,
            self._opt,
            self._pert,
            self._cam,
            mujoco.mjtCatBit.mjCAT_ALL,
            self._scene,
        )
        flags = self._scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
        mujoco.mjr_render(self._rect, self._scene, self._mjr)
        mujoco.mjr_readPixels(self._buf, None, self._rect, self._mjr)
        return np.ascontiguousarray(self._buf[::-1])  # OpenGL rows start at the bottom

    def close(self) -> None:
        """Free the render and GL contexts (idempotent)."""
        if self._mjr is not None:
            self._mjr.free()
            self._mjr = None
        if self._ctx is not None:
            self._ctx.free()
            self._ctx = None
