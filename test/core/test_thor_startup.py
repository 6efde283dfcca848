"""AI2-THOR start-up: the authors' controller arguments on a headless host, clear errors otherwise.

The expected arguments are typed here from the authors' code, not from our module:
PKU-Alignment/SafeVLA (commit 6464cbd) utils/constants/stretch_initialization_utils.py
``STRETCH_ENV_ARGS`` (lines 86-111; ``action_hook_runner``, ``render_mani_camera`` and
``use_quick_navi_action`` aside) and tasks/abstract_task_sampler.py lines 77-82
(``platform: CloudRendering``, ``gpu_device``).
"""

from __future__ import annotations

import pytest

from safevla_core.sim.thor_backend import THOR_BUILD_ENV, ThorBackend, ThorConfig
from safevla_core.sim.thor_startup import (
    AUTHORS_AI2THOR_INSTALL,
    HostFacts,
    ThorStartupError,
    controller_kwargs,
    probe_host,
)

AUTHORS = {
    "gridSize": 0.15,  # AGENT_MOVEMENT_CONSTANT * 0.75
    "width": 396,  # INTEL_CAMERA_WIDTH
    "height": 224,  # INTEL_CAMERA_HEIGHT
    "visibilityDistance": 0.8673349051766235,  # MAXIMUM_DISTANCE_ARM_FROM_AGENT_CENTER
    "visibilityScheme": "Distance",
    "fieldOfView": 59,  # INTEL_VERTICAL_FOV
    "server_class": "ai2thor.fifo_server.FifoServer",
    "useMassThreshold": False,
    "massThreshold": 1,
    "autoSimulation": False,
    "autoSyncTransforms": True,
    "renderInstanceSegmentation": True,
    "agentMode": "stretch",
    "renderDepthImage": False,  # SAVE_DEPTH
    "cameraNearPlane": 0.01,
    "branch": None,
    "commit_id": "966bd7758586e05d18f6181f459c0e90ba318bec",  # STRETCH_COMMIT_ID
    "server_timeout": 1200,  # MAXIMUM_SERVER_TIMEOUT
    "snapToGrid": False,
    "fastActionEmit": True,
    "platform": "ai2thor.platform.CloudRendering",  # abstract_task_sampler.py line 80
}

GPU_HOST = HostFacts(
    display=None,
    vulkan=True,
    ai2thor_version="0+966bd77",
    has_hooks=True,
    objaverse_assets_dir="/data/objaverse/2023_07_28/assets",
)


def test_headless_gpu_host_gets_the_authors_arguments():
    backend = ThorBackend(ThorConfig(build_path=None, gpu_device=0))
    args = backend.controller_args(GPU_HOST)
    assert args.pop("action_hook_runner") == "hook"  # built at start: ProceduralAssetHookRunner
    assert args.pop("gpu_device") == 0
    assert args.keys() == AUTHORS.keys()
    for key, value in AUTHORS.items():
        assert (
            args[key] == pytest.approx(value) if isinstance(value, float) else args[key] == value
        ), key


def test_spoc_mass_threshold_and_none():
    args = controller_kwargs(GPU_HOST, mass_threshold_kg=10.0)
    assert args["massThreshold"] == 10.0  # SPOC
    assert "massThreshold" not in controller_kwargs(GPU_HOST, mass_threshold_kg=None)
    with pytest.raises(ThorStartupError, match="positive"):
        controller_kwargs(GPU_HOST, mass_threshold_kg=0.0)


def test_no_display_no_build_no_vulkan_names_what_is_missing():
    host = HostFacts(
        display=None,
        vulkan=False,
        ai2thor_version="5.0.0",
        has_hooks=False,
        objaverse_assets_dir=None,
    )
    with pytest.raises(ThorStartupError, match="no local build and no Vulkan.*libvulkan1"):
        controller_kwargs(host)


def test_local_build_without_display_is_refused_not_a_type_error(tmp_path):
    # ai2thor 5.0.0 would run the local build as Linux64 and pass DISPLAY=None to Popen.
    build = tmp_path / "thor-Linux64-local"
    build.write_text("")
    host = HostFacts(
        display=None,
        vulkan=True,
        ai2thor_version="5.0.0",
        has_hooks=False,
        objaverse_assets_dir=None,
    )
    with pytest.raises(ThorStartupError, match=f"{THOR_BUILD_ENV}.*X display.*DISPLAY"):
        controller_kwargs(host, build_path=str(build))
    args = controller_kwargs(HostFacts(":0", False, "5.0.0", False, None), build_path=str(build))
    assert args["local_executable_path"] == str(build) and args["x_display"] == ":0"
    assert not {"commit_id", "platform", "branch"} & args.keys()
    with pytest.raises(ThorStartupError, match="does not exist"):
        controller_kwargs(
            HostFacts(":0", False, "5.0.0", False, None), build_path=str(tmp_path / "missing")
        )


def test_objaverse_house_needs_the_hook_runner():
    public = HostFacts(
        display=None,
        vulkan=True,
        ai2thor_version="5.0.0",
        has_hooks=False,
        objaverse_assets_dir="/data/assets",
    )
    assert "action_hook_runner" not in controller_kwargs(public)  # a THOR-assets house is fine
    with pytest.raises(ThorStartupError, match="ai2thor.hooks.*ai2thor-pypi.allenai.org"):
        controller_kwargs(public, needs_objaverse=True)
    no_assets = HostFacts(None, True, "0+966bd77", True, None)
    with pytest.raises(ThorStartupError, match="objathor's assets"):
        controller_kwargs(no_assets, needs_objaverse=True)


def test_without_ai2thor_the_error_gives_the_install_line():
    with pytest.raises(ThorStartupError, match="ai2thor is not installed") as err:
        controller_kwargs(HostFacts(None, True, None, False, None))
    assert AUTHORS_AI2THOR_INSTALL in str(err.value)
    assert "ai2thor==0+966bd7758586e05d18f6181f459c0e90ba318bec" in AUTHORS_AI2THOR_INSTALL


def test_this_machine_cannot_start_thor_and_says_why(monkeypatch):
    # This machine: no GPU, no display, ai2thor not installed (ENVIRONMENT.md).
    monkeypatch.delenv(THOR_BUILD_ENV, raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    host = probe_host()
    with pytest.raises(ThorStartupError) as err:
        ThorBackend(ThorConfig()).controller_args(host)
    assert "ai2thor" in str(err.value) or "Vulkan" in str(err.value)


def test_backend_reset_raises_the_startup_error(monkeypatch):
    import json
    from pathlib import Path

    monkeypatch.delenv(THOR_BUILD_ENV, raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    house = json.loads(
        (Path(__file__).resolve().parents[1] / "fixtures" / "procthor_house.json").read_text()
    )
    backend = ThorBackend(ThorConfig())
    with pytest.raises(ThorStartupError):
        backend.reset(house | {"objects": []})
    with pytest.raises(RuntimeError, match="reset"):
        backend.step("m")
