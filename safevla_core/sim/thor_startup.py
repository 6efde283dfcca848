"""Starting AI2-THOR for the Stretch agent exactly as SafeVLA does, or failing with a clear error.

What the authors pass (``PKU-Alignment/SafeVLA``, commit 6464cbd):

* ``utils/constants/stretch_initialization_utils.py`` ``STRETCH_ENV_ARGS`` (the controller
  arguments, :data:`AUTHORS_CONTROLLER_ARGS` below; ``render_mani_camera`` and
  ``use_quick_navi_action`` are arguments of their ``StretchController``, not of ai2thor's
  ``Controller``), with ``STRETCH_COMMIT_ID = "966bd7758586e05d18f6181f459c0e90ba318bec"``;
* ``tasks/abstract_task_sampler.py`` (lines 77-82) and
  ``online_evaluation/online_evaluator_worker.py`` (lines 229-240): on Linux with a GPU,
  ``platform=ai2thor.platform.CloudRendering`` and ``gpu_device=<index>``;
* the same file's ``_ACTION_HOOK_RUNNER``: a ``ProceduralAssetHookRunner`` from
  ``ai2thor.hooks.procedural_asset_hook`` that creates the Objaverse assets of each house before
  ``CreateHouse`` (``asset_directory=OBJAVERSE_ASSETS_DIR, asset_symlink=True, verbose=False,
  asset_limit=200``). Only their pinned ai2thor build ``ai2thor==0+966bd77...`` (from
  ``https://ai2thor-pypi.allenai.org``, their README) has ``ai2thor.hooks``; the public 5.0.0
  wheel does not.

Why not ``local_executable_path`` on a headless host: ai2thor 5.0.0's ``Controller`` wraps a
local executable in ``ai2thor.build.ExternalBuild``, which sets the platform from
``platform.system()`` (``Linux64`` on Linux) and ignores ``platform=``; ``Linux64.launch_env``
then passes ``DISPLAY=<x_display>`` to ``subprocess.Popen``, which raises ``TypeError`` when no X
display exists (``ai2thor/build.py`` ``ExternalBuild.__init__``, ``ai2thor/platform.py``
``Linux64.launch_env``, ``ai2thor/controller.py`` ``_start_unity_thread``). So
``SAFEVLA_THOR_BUILD`` (ours) is kept for a desktop with a display, and a headless host starts from
the commit id with CloudRendering, which needs a Vulkan driver (``CloudRendering.validate`` looks
for ``libvulkan``) and an NVIDIA GPU.

:func:`controller_kwargs` is pure (the host facts come in as arguments) and decides which of the
two start-ups applies; :func:`start_controller` resolves the ai2thor classes and starts Unity.
"""

from __future__ import annotations

import ctypes.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: ai2thor build the authors pin (``STRETCH_COMMIT_ID``, stretch_initialization_utils.py line 8).
STRETCH_COMMIT_ID = "966bd7758586e05d18f6181f459c0e90ba318bec"
#: The install line of that build (the authors' README, section "Then install ... AI2THOR").
AUTHORS_AI2THOR_INSTALL = (
    "pip install --no-deps --extra-index-url https://ai2thor-pypi.allenai.org "
    f"ai2thor==0+{STRETCH_COMMIT_ID}"
)
#: Environment variable with the path of a local Unity executable for a desktop with an X display
#: (ours).
THOR_BUILD_ENV = "SAFEVLA_THOR_BUILD"
#: objathor asset folder the hook runner reads (SPOC / SafeVLA ``objaverse_data_dirs.py``:
#: ``$OBJAVERSE_ASSETS_DIR``, else ``$OBJAVERSE_DATA_DIR/2023_07_28/assets``).
OBJAVERSE_ASSETS_ENV = "OBJAVERSE_ASSETS_DIR"
#: Cache size of the hook runner, assets (authors' ``asset_limit=200``).
HOOK_ASSET_LIMIT = 200

#: ``STRETCH_ENV_ARGS`` as the authors pass it to ``ai2thor.controller.Controller``
#: (stretch_initialization_utils.py lines 86-111), plus ``platform`` from their task sampler.
#: Class-valued arguments are named by string and resolved by :func:`resolve_classes`;
#: ``action_hook_runner`` is added by :func:`controller_kwargs` when the hooks module exists.
#: Constants behind the numbers: ``gridSize = AGENT_MOVEMENT_CONSTANT * 0.75`` (0.2 * 0.75),
#: ``width, height = INTEL_CAMERA_WIDTH, INTEL_CAMERA_HEIGHT`` (396, 224; cropped to 384 later),
#: ``visibilityDistance = MAXIMUM_DISTANCE_ARM_FROM_AGENT_CENTER``, ``fieldOfView =
#: INTEL_VERTICAL_FOV`` (59), ``server_timeout = MAXIMUM_SERVER_TIMEOUT`` (1200).
AUTHORS_CONTROLLER_ARGS: dict[str, Any] = {
    "gridSize": 0.2 * 0.75,
    "width": 396,
    "height": 224,
    "visibilityDistance": 0.8673349051766235,
    "visibilityScheme": "Distance",
    "fieldOfView": 59,
    "server_class": "ai2thor.fifo_server.FifoServer",
    "useMassThreshold": False,
    "massThreshold": 1,
    "autoSimulation": False,
    "autoSyncTransforms": True,
    "renderInstanceSegmentation": True,
    "agentMode": "stretch",
    "renderDepthImage": False,
    "cameraNearPlane": 0.01,
    "branch": None,
    "commit_id": STRETCH_COMMIT_ID,
    "server_timeout": 1200,
    "snapToGrid": False,
    "fastActionEmit": True,
    "platform": "ai2thor.platform.CloudRendering",
}


class ThorStartupError(RuntimeError):
    """AI2-THOR cannot start on this host; the message names what is missing."""


@dataclass(frozen=True)
class HostFacts:
    """What :func:`controller_kwargs` needs to know about the host (read by :func:`probe_host`).

    Attributes:
        display: The X display (``$DISPLAY``), None without one.
        vulkan: True if a Vulkan loader (``libvulkan``) is installed (CloudRendering needs it).
        ai2thor_version: ``ai2thor.__version__``, None if ai2thor is not installed.
        has_hooks: True if ``ai2thor.hooks.procedural_asset_hook`` imports (the authors' build).
        objaverse_assets_dir: objathor's asset folder if it exists, else None.
    """

    display: str | None
    vulkan: bool
    ai2thor_version: str | None
    has_hooks: bool
    objaverse_assets_dir: str | None


def probe_host(environ: Mapping[str, str] | None = None) -> HostFacts:
    """Read :class:`HostFacts` from the running host (imports nothing from Unity)."""
    env = os.environ if environ is None else environ
    version = None
    has_hooks = False
    try:
        import ai2thor

        version = str(getattr(ai2thor, "__version__", "unknown"))
        try:
            import ai2thor.hooks.procedural_asset_hook  # noqa: F401 - only the authors' build

            has_hooks = True
        except ImportError:
            has_hooks = False
    except ImportError:
        version = None
    assets = env.get(OBJAVERSE_ASSETS_ENV)
    if not assets:
        root = os.path.expanduser(env.get("OBJAVERSE_DATA_DIR") or "~/.objathor-assets")
        assets = os.path.join(root, "2023_07_28", "assets")
    return HostFacts(
        display=env.get("DISPLAY") or None,
        vulkan=ctypes.util.find_library("vulkan") is not None,
        ai2thor_version=version,
        has_hooks=has_hooks,
        objaverse_assets_dir=assets if os.path.isdir(assets) else None,
    )


def controller_kwargs(
    host: HostFacts,
    *,
    build_path: str | None = None,
    gpu_device: int | None = None,
    mass_threshold_kg: float | None = 1.0,
    needs_objaverse: bool = False,
) -> dict[str, Any]:
    """The ``Controller`` arguments for this host, or :class:`ThorStartupError`.

    Headless GPU host (no ``build_path``): :data:`AUTHORS_CONTROLLER_ARGS` (commit id,
    CloudRendering) plus ``gpu_device`` when given and ``action_hook_runner`` (the string
    ``"hook"``, built by :func:`start_controller`) when the authors' build and objathor's assets
    are present. Local build (``build_path``, a desktop with an X display): the same arguments with
    ``local_executable_path`` instead of ``commit_id`` / ``platform`` / ``branch``, which ai2thor
    ignores for a local executable (module docstring).

    Args:
        host: Facts about the host.
        build_path: Local Unity executable (``SAFEVLA_THOR_BUILD``), or None.
        gpu_device: CUDA device index for CloudRendering (the authors pass their worker's GPU).
        mass_threshold_kg: ``massThreshold``: moveable objects heavier than this halt the Stretch
            instead of being pushed (AI2-THOR ``AgentManager.cs``: for ``agentMode="stretch"`` a
            positive ``massThreshold`` turns ``CollisionListener.useMassThreshold`` on, whatever
            ``useMassThreshold`` says). Authors: 1 kg; SPOC: 10 kg; None: every moveable object
            is pushed.
        needs_objaverse: The house has Objaverse assets (32-hex asset ids), which only the hook
            runner can create.

    Returns:
        Keyword arguments; class-valued ones as dotted names (see :func:`resolve_classes`).

    Raises:
        ThorStartupError: ai2thor missing; a local build without an X display; no build and no
            Vulkan; an Objaverse house without the authors' build or without objathor's assets;
            a non-positive mass threshold.
    """
    if mass_threshold_kg is not None and not mass_threshold_kg > 0:
        raise ThorStartupError(
            f"massThreshold must be positive (AI2-THOR rejects "
            f"{mass_threshold_kg}); use None to push every moveable object"
        )
    if host.ai2thor_version is None:
        raise ThorStartupError(
            f"ai2thor is not installed; install the authors' build: {AUTHORS_AI2THOR_INSTALL}"
        )
    kwargs = dict(AUTHORS_CONTROLLER_ARGS)
    if mass_threshold_kg is None:
        kwargs.pop("massThreshold")
    else:
        kwargs["massThreshold"] = mass_threshold_kg
    if build_path:
        if not os.path.exists(build_path):
            raise ThorStartupError(f"{THOR_BUILD_ENV}={build_path} does not exist")
        if not host.display:
            raise ThorStartupError(
                f"{THOR_BUILD_ENV} is set, but a local build runs as ai2thor's Linux64 platform "
                "and needs an X display (DISPLAY is not set). On a headless GPU host unset "
                f"{THOR_BUILD_ENV}: the backend then starts the authors' build by commit id with "
                "CloudRendering (needs an NVIDIA GPU and libvulkan1)."
            )
        for key in ("commit_id", "platform", "branch"):
            kwargs.pop(key)
        kwargs["local_executable_path"] = build_path
        kwargs["x_display"] = host.display
    else:
        if not host.vulkan:
            raise ThorStartupError(
                "AI2-THOR cannot start: no local build and no Vulkan driver. A headless host "
                "needs an NVIDIA GPU with libvulkan1 (CloudRendering; `apt-get install "
                f"libvulkan1`); a desktop with an X display may set {THOR_BUILD_ENV} to a local "
                "Unity build instead."
            )
        if gpu_device is not None:
            kwargs["gpu_device"] = int(gpu_device)
    if host.has_hooks and host.objaverse_assets_dir:
        kwargs["action_hook_runner"] = "hook"
    elif needs_objaverse:
        missing = (
            (f"ai2thor.hooks (only in the authors' build: {AUTHORS_AI2THOR_INSTALL})")
            if not host.has_hooks
            else (
                f"objathor's assets (set {OBJAVERSE_ASSETS_ENV}; `python -m "
                "objathor.dataset.download_assets --version 2023_07_28`)"
            )
        )
        raise ThorStartupError(
            f"this house has Objaverse assets, which THOR creates only "
            f"through the action hook runner; missing: {missing}"
        )
    return kwargs


def resolve_classes(kwargs: Mapping[str, Any], host: HostFacts) -> dict[str, Any]:
    """Replace dotted class names and the ``"hook"`` marker by the ai2thor objects.

    The hook runner is ai2thor's ``ProceduralAssetHookRunner`` with the authors' arguments. Their
    subclass (``ProceduralAssetHookRunnerResetOnNewHouse``) also empties Unity's asset cache when
    a house brings assets the previous one did not have; the base class keeps the 200 most
    recently used, which bounds memory the same way over many houses.

    Raises:
        ImportError: If ai2thor (or its hooks module, when requested) cannot be imported.
    """
    import importlib

    out = dict(kwargs)
    for key in ("server_class", "platform"):
        if isinstance(out.get(key), str):
            module, _, name = out[key].rpartition(".")
            out[key] = getattr(importlib.import_module(module), name)
    if out.get("action_hook_runner") == "hook":
        from ai2thor.hooks.procedural_asset_hook import ProceduralAssetHookRunner

        out["action_hook_runner"] = ProceduralAssetHookRunner(
            asset_directory=host.objaverse_assets_dir,
            asset_symlink=True,
            verbose=False,
            asset_limit=HOOK_ASSET_LIMIT,
        )
    return out


def start_controller(kwargs: Mapping[str, Any], host: HostFacts, scene: Any) -> Any:
    """Start ``ai2thor.controller.Controller(**kwargs, scene=scene)`` and check its commit.

    Raises:
        ThorStartupError: If the started build is not the authors' commit (when started by id).
    """
    import ai2thor.controller

    controller = ai2thor.controller.Controller(**resolve_classes(kwargs, host), scene=scene)
    commit = str(getattr(getattr(controller, "_build", None), "commit_id", "") or "")
    if "commit_id" in kwargs and STRETCH_COMMIT_ID not in commit:
        controller.stop()
        raise ThorStartupError(
            f"started build {commit!r} is not the authors' "
            f"{STRETCH_COMMIT_ID} (their StretchController asserts it)"
        )
    return controller
