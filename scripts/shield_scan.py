#!/usr/bin/env python3
"""How many collisions the shield stops, and how many safe actions it vetoes (issue 10).

Runs a random policy (with probability ``--repeat`` the previous proposal again, else ``m`` with
probability ``--forward``, else uniform over the 18 motion and gripper actions; ``end`` and
``sub_done`` are never proposed: a policy that drives into things) in simulated houses with
the shield on, exactly as the safety monitor decides in sim mode: the simulated laser scan
(:mod:`safevla_core.sim.laser`) swept along each action's motion, plus the world-state checks
(and with ``--depth`` the navigation camera's depth image, as config/safety_monitor.yaml has it).
Every proposal is labelled by trying it: the simulator state is saved, the action executed, its
contacts recorded (``collided_ids`` not empty = a collision), and the state restored when the
shield vetoed it (a vetoed action never happened, as on the robot).
So each proposal counts once, with the truth of what it would have done.

Prints the share of collisions stopped (vetoed colliding proposals / colliding proposals), the
share of safe actions vetoed (vetoed non-colliding proposals / non-colliding proposals), the
episodes whose first collision reached the simulator, and the same per action.

Usage:
    MUJOCO_GL=egl python scripts/shield_scan.py --episodes 100 --steps 150 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def _snapshot(backend) -> tuple:
    import mujoco

    m, d = backend.model, backend.data
    d2 = mujoco.MjData(m)
    mujoco.mj_copyData(d2, m, d)
    arrays = {
        k: getattr(m, k).copy()
        for k in ("actuator_gainprm", "actuator_biasprm", "actuator_forcerange", "eq_data")
    }
    return d2, arrays, backend._step, backend._held, backend._last_seen.copy(), backend._state


def _restore(backend, snap: tuple) -> None:
    import mujoco

    d2, arrays, step, held, last_seen, state = snap
    m = backend.model
    mujoco.mj_copyData(backend.data, m, d2)
    for k, v in arrays.items():
        getattr(m, k)[...] = v
    backend._step, backend._held, backend._last_seen, backend._state = step, held, last_seen, state


def main(argv: list[str] | None = None) -> int:
    """Run the scan and print the figures (and a JSON line)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--steps", type=int, default=150, help="proposals per episode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="train")
    ap.add_argument(
        "--forward",
        type=float,
        default=0.4,
        help="probability of proposing m (move ahead): drives into things",
    )
    ap.add_argument(
        "--repeat",
        type=float,
        default=0.5,
        help="probability of proposing the previous proposal again (long runs)",
    )
    ap.add_argument(
        "--no-world",
        action="store_true",
        help="scan evidence only (the hardware check), no world-state checks",
    )
    ap.add_argument(
        "--depth",
        action="store_true",
        help="also the navigation camera's depth image (80x48 ray cast, as the simulator node "
        "publishes it) as the monitor reads it with the default depth.* settings",
    )
    ap.add_argument(
        "--depth-pitch-deg",
        type=float,
        default=None,
        help="with --depth: a depth camera at the navigation camera's place tilted this far "
        "down instead (a head camera looking nearer the base)",
    )
    args = ap.parse_args(argv)

    from safevla_core.actions import ACTION_NAMES, Action
    from safevla_core.config import Config
    from safevla_core.houses.splits import load_house
    from safevla_core.shield import (
        DepthCamera,
        PinholeIntrinsics,
        ShieldLimits,
        decide,
        depth_to_points,
        scan_to_points,
    )
    from safevla_core.sim.laser import DepthSpec, LaserSpec, cast_depth, cast_depth_at
    from safevla_core.sim.mujoco_backend import MujocoBackend
    from safevla_core.sim.stretch_model import NAV_CAMERA_NAME

    cfg = Config()
    limits = ShieldLimits()
    spec = LaserSpec()
    dspec, dcam = DepthSpec(), DepthCamera()
    if args.depth_pitch_deg is not None:
        dcam = DepthCamera(pitch_rad=math.radians(args.depth_pitch_deg))
    f = dspec.focal_px(cfg.sim.vertical_fov_deg)
    k = PinholeIntrinsics(
        f, f, (dspec.width - 1) / 2, (dspec.height - 1) / 2, dspec.width, dspec.height
    )
    backend = MujocoBackend(cfg.sim, cfg.costs, width=32, height=32, stow_gripper=True)
    rng = np.random.default_rng(args.seed)
    proposable = [a for a in Action if a not in (Action.END, Action.SUB_DONE)]
    n_houses = {
        "train": cfg.houses.num_train,
        "val": cfg.houses.num_val,
        "test": cfg.houses.num_test,
    }[args.split]
    counts: Counter = Counter()
    per_action: dict[str, Counter] = {ACTION_NAMES[a]: Counter() for a in proposable}
    first_reached = first_any = 0
    verdicts: Counter = Counter()
    t0 = time.monotonic()
    for ep in range(args.episodes):
        house = load_house(args.split, int(rng.integers(n_houses)), cfg.houses)
        world = backend.reset(house, seed=int(rng.integers(2**31 - 1)))
        reachable = backend.reachable_positions()
        prev = last = None
        first_seen = False
        for _ in range(args.steps):
            u = rng.random()
            if last is not None and u < args.repeat:
                action = last
            elif u < args.repeat + (1 - args.repeat) * args.forward:
                action = Action.MOVE_AHEAD
            else:
                action = proposable[int(rng.integers(len(proposable)))]
            last = action
            pts, bad = scan_to_points(
                backend.laser_scan(),
                spec.angle_min_rad,
                spec.angle_increment_rad,
                spec.range_min_m,
                spec.range_max_m,
            )
            depth = {}
            if args.depth:
                if args.depth_pitch_deg is None:
                    dep = cast_depth(backend.model, backend.data, NAV_CAMERA_NAME, dspec)
                else:  # the tilted camera's pose in the world, from the robot's pose
                    x, y, yaw = (float(v) for v in world.robot_pose)
                    c, s = math.cos(yaw), math.sin(yaw)
                    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
                    origin = np.array([x, y, 0.0]) + rz @ [dcam.x_m, dcam.y_m, dcam.z_m]
                    dep = cast_depth_at(
                        backend.model,
                        backend.data,
                        origin,
                        rz @ dcam.rotation(),
                        cfg.sim.vertical_fov_deg,
                        dspec,
                    )
                xyz, dbad = depth_to_points(dep, k, dcam)
                depth = {"depth_xyz": xyz, "depth_invalid_fraction": dbad}
            d = decide(
                action,
                limits,
                **depth,
                world=None if args.no_world else world,
                reachable_xy=None if args.no_world else reachable,
                scan_xy=pts,
                scan_invalid_fraction=bad,
                arm=None if not args.no_world else _arm(world),
                previous_action=prev,
            )
            snap = _snapshot(backend)
            after = backend.step(action)
            collided = bool(after.collided_ids)
            key = ("collide" if collided else "safe", "veto" if not d.approved else "pass")
            counts[key] += 1
            per_action[ACTION_NAMES[action]][key] += 1
            if not d.approved:
                verdicts[key[0], d.verdict.value] += 1
            if collided and not first_seen:
                first_seen = True
                first_any += 1
                first_reached += int(d.approved)
            if d.approved:
                world, prev = after, action
            else:
                _restore(backend, snap)
        if (ep + 1) % 10 == 0:
            print(f"  {ep + 1} episodes, {time.monotonic() - t0:.0f} s", file=sys.stderr)
    coll = counts["collide", "veto"] + counts["collide", "pass"]
    safe = counts["safe", "veto"] + counts["safe", "pass"]
    stopped = counts["collide", "veto"] / max(coll, 1)
    vetoed_safe = counts["safe", "veto"] / max(safe, 1)
    print(
        f"episodes {args.episodes} x {args.steps} random proposals ({args.split} houses, "
        f"seed {args.seed}, {'scan only' if args.no_world else 'scan + world state'}"
        f"{' + depth camera' if args.depth else ''}"
        f"{f' tilted {args.depth_pitch_deg:g} deg' if args.depth_pitch_deg is not None else ''})"
    )
    print(
        f"colliding proposals: {coll}; stopped {counts['collide', 'veto']} = {stopped:.1%}; "
        f"reached the simulator {counts['collide', 'pass']}"
    )
    print(f"safe proposals: {safe}; vetoed {counts['safe', 'veto']} = {vetoed_safe:.1%}")
    print(
        f"episodes with a collision proposal: {first_any}; first one reached the simulator in "
        f"{first_reached}"
    )
    print(
        "vetoes by verdict: "
        + ", ".join(f"{k[0]} {k[1]}: {v}" for k, v in sorted(verdicts.items()))
    )
    print("per action (collide pass/veto, safe pass/veto):")
    for name, c in per_action.items():
        print(
            f"  {name:>4}: {c['collide', 'pass']:4d}/{c['collide', 'veto']:4d}  "
            f"{c['safe', 'pass']:4d}/{c['safe', 'veto']:4d}"
        )
    print(
        json.dumps(
            {
                "collisions": coll,
                "collisions_stopped_share": round(stopped, 4),
                "safe": safe,
                "safe_vetoed_share": round(vetoed_safe, 4),
                "episodes_first_collision_reached": first_reached,
                "episodes_with_collision": first_any,
            }
        )
    )
    backend.close()
    return 0


def _arm(world):
    from safevla_core.shield import ArmPose

    return ArmPose(world.lift_m, world.arm_m, world.wrist_yaw_rad)


if __name__ == "__main__":
    sys.exit(main())
