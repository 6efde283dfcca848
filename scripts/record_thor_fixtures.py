#!/usr/bin/env python3
r"""Record the THOR replay fixtures on a host that runs AI2-THOR (run once, on a GPU host).

Replays every case of test/fixtures/thor/*.json (setup, actions, controller overrides) on the
authors' AI2-THOR build and overwrites the file with what THOR returned: ``event.metadata`` after
the setup and after each action, the ``GetVisibleObjects`` returns of both cameras
(``maxDistance=4``, the authors' seen list; ``thirdPartyCameraIndex=0`` for the manipulation
camera) and ``GetReachablePositions``. The tests read the recordings unchanged
(test_thor_backend.py, test_thor_events.py, test_thor_fixtures_schema.py); a hand-worked
expectation that no longer holds means the hand-made case did not match real THOR -- look at the
case, not at the recording.

Needs: an NVIDIA GPU with Vulkan (CloudRendering) and the authors' ai2thor build::

    pip install --no-deps --extra-index-url https://ai2thor-pypi.allenai.org \\
        ai2thor==0+966bd7758586e05d18f6181f459c0e90ba318bec
    python scripts/record_thor_fixtures.py [--cases wall_bump,release] [--gpu 0] [--dry-run]

(or a local build with an X display: ``SAFEVLA_THOR_BUILD=/path/to/thor-Linux64-...``). The
house is test/fixtures/procthor_house.json; its assets are THOR assets, so no Objaverse assets
are needed. Calibration runs without noise so that recordings repeat. ``--dry-run`` prints the
actions of every case without starting THOR.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from safevla_core.actions import parse_action  # noqa: E402
from safevla_core.houses.procthor_import import (  # noqa: E402
    export_procthor_house,
    import_procthor_house,
)
from safevla_core.sim.thor_backend import (  # noqa: E402
    POST_RELEASE_ACTION,
    SEEN_MAX_DISTANCE_M,
    ThorConfig,
    calibration_actions,
    scene_for_thor,
    thor_action_for,
    world_state_from_event_metadata,
)
from safevla_core.sim.thor_metadata import metadata_problems  # noqa: E402
from safevla_core.sim.thor_startup import (  # noqa: E402
    controller_kwargs,
    probe_host,
    start_controller,
)

FIXTURES = REPO / "test" / "fixtures" / "thor"
HOUSE = REPO / "test" / "fixtures" / "procthor_house.json"


def _step(controller: Any, **action: Any) -> dict[str, Any]:
    """One action; returns a deep copy of its metadata (later queries replace last_event)."""
    event = controller.step(**action)
    return json.loads(json.dumps(event.metadata, default=str))


def _observe(controller: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    nav = controller.step(action="GetVisibleObjects", maxDistance=SEEN_MAX_DISTANCE_M)
    manip = controller.step(
        action="GetVisibleObjects", maxDistance=SEEN_MAX_DISTANCE_M, thirdPartyCameraIndex=0
    )
    return {
        "metadata": metadata,
        "nav_visible": list(nav.metadata.get("actionReturn") or []),
        "manip_visible": list(manip.metadata.get("actionReturn") or []),
    }


def _setup(controller: Any, setup: dict[str, Any]) -> dict[str, Any]:
    """Put the robot where the case starts; returns the metadata of the last setup action."""
    x, z, yaw = setup["pose"]
    y = controller.last_event.metadata["agent"]["position"]["y"]
    meta = _step(
        controller,
        action="Teleport",
        position={"x": x, "y": y, "z": z},
        rotation={"x": 0.0, "y": yaw, "z": 0.0},
    )
    if not meta["lastActionSuccess"]:
        raise RuntimeError(f"teleport to {setup['pose']} failed: {meta['errorMessage']}")
    state = world_state_from_event_metadata(meta, 0)
    if "lift_m" in setup or "arm_m" in setup:
        target = {
            "x": 0.0,
            "y": setup.get("lift_m", state.lift_m),
            "z": setup.get("arm_m", state.arm_m),
        }
        meta = _step(controller, action="MoveArm", position=target, returnToStart=True, speed=1)
        state = world_state_from_event_metadata(meta, 0)
    if "wrist_deg" in setup:
        reading = float(state.extras["wrist_reading_deg"])
        meta = _step(
            controller,
            action="RotateWristRelative",
            yaw=float(setup["wrist_deg"]) - reading,
            returnToStart=True,
            speed=1,
        )
    if "hold" in setup:
        meta = _step(controller, action="PickupObject")
        if setup["hold"] not in meta["arm"]["heldObjects"]:
            raise RuntimeError(f"setup could not pick up {setup['hold']}: {meta['errorMessage']}")
    return meta


def record_case(controller: Any, doc: dict[str, Any], scene: dict[str, Any]) -> dict[str, Any]:
    """Replay one case on THOR; returns the new document."""
    controller.reset(scene=scene)
    for act in calibration_actions(noise=False):
        _step(controller, **act)
    reach = _step(controller, action="GetReachablePositions", gridSize=ThorConfig().grid_size_m)[
        "actionReturn"
    ]
    meta = _setup(controller, doc["setup"])
    meta["lastActionSuccess"], meta["errorMessage"] = True, ""
    states = [_observe(controller, meta)]
    state = world_state_from_event_metadata(meta, 0)
    for k, short in enumerate(doc["actions"], start=1):
        action = parse_action(short)
        meta = _step(controller, **thor_action_for(action, state, quick=True))
        if action.name == "DROP":
            after = _step(controller, **POST_RELEASE_ACTION)
            for key in ("lastActionSuccess", "errorMessage", "collided", "collidedObjects"):
                after[key] = meta.get(key, after.get(key))
            meta = after
        states.append(_observe(controller, meta))
        state = world_state_from_event_metadata(meta, k, state)
    build = getattr(getattr(controller, "_build", None), "commit_id", "?")
    return dict(
        doc,
        source=f"recorded by scripts/record_thor_fixtures.py on AI2-THOR {build}, "
        f"{datetime.date.today().isoformat()}",
        reachable_positions=reach,
        states=states,
    )


def main(argv: list[str] | None = None) -> int:
    """Record the selected cases; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--gpu", type=int, default=None, help="CUDA device for CloudRendering")
    parser.add_argument("--dry-run", action="store_true", help="print the cases, start nothing")
    args = parser.parse_args(argv)
    paths = sorted(FIXTURES.glob("*.json"))
    if args.cases:
        wanted = set(args.cases.split(","))
        paths = [p for p in paths if p.stem in wanted]
        if {p.stem for p in paths} != wanted:
            print(f"unknown cases: {sorted(wanted - {p.stem for p in paths})}", file=sys.stderr)
            return 2
    docs = {p: json.loads(p.read_text()) for p in paths}
    if args.dry_run:
        for p, doc in docs.items():
            print(p.stem, doc.get("controller", {}), doc["setup"], doc["actions"])
        return 0
    ours = import_procthor_house(json.loads(HOUSE.read_text()))
    scene = scene_for_thor(export_procthor_house(ours)[0])
    host = probe_host()
    cfg = ThorConfig(gpu_device=args.gpu)
    by_threshold: dict[Any, list[Path]] = {}
    for p, doc in docs.items():
        mass = doc.get("controller", {}).get("massThreshold", cfg.mass_threshold_kg)
        by_threshold.setdefault(mass, []).append(p)
    for mass, group in by_threshold.items():
        kwargs = controller_kwargs(
            host, build_path=cfg.build_path, gpu_device=cfg.gpu_device, mass_threshold_kg=mass
        )
        controller = start_controller(kwargs, host, scene)
        try:
            for p in group:
                new = record_case(controller, docs[p], scene)
                problems = [q for st in new["states"] for q in metadata_problems(st["metadata"])]
                if problems:
                    print(f"{p.stem}: metadata problems: {problems[:5]}", file=sys.stderr)
                p.write_text(json.dumps(new, separators=(",", ":")) + "\n")
                print(f"recorded {p.relative_to(REPO)} ({len(new['states'])} states)")
        finally:
            controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
