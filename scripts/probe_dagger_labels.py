r"""What does the exploring expert say on a learner's states? A step-by-step DAgger probe.

Drives Safety-ObjNav training-house episodes with a learner checkpoint as ``safevla dagger``
does (the learner acts; a wrong ``end`` is replaced by the expert's label; seed of episode i is
``--seed + i``, house ``i mod`` the split's size, so ``--seed 2000000`` gives the houses, targets
and starts of ``scripts/dagger_objnav.sh``'s first process; the learner samples its own
actions, so the trajectories differ), and prints, for every step once the expert has
stopped searching (its labels there are BC targets under ``--label-after-sighting``):

    t, base pose, the learner's action, the expert's label (``b*``: a back-out, ``end!``: a
    give-up), the nearest target's distance and bearing, whether it is in view, whether the base
    is on a free grid cell, and whether the last action went through

and one summary line per episode. docs/results section 11 quotes this script on
``runs/il_v10/il.pt``:

    .venv/bin/python scripts/probe_dagger_labels.py runs/il_v10/il.pt 5 11 12 13

Reads ground truth (privileged); for diagnosis only.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safevla_core.actions import ACTION_NAMES, Action  # noqa: E402


def main() -> int:
    """Run the probe; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="the learner (an IL checkpoint)")
    parser.add_argument("episodes", nargs="+", type=int, help="episode indices i")
    parser.add_argument("--config", default="config/compare_cpu.yaml")
    parser.add_argument("--seed", type=int, default=2_000_000, help="seed of episode 0")
    parser.add_argument("--heading-tolerance-deg", type=float, default=16.0)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--quiet", action="store_true", help="summary lines only")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    from safevla_core.agent import PolicyAgent
    from safevla_core.config import load_config
    from safevla_core.env import SafetyChoresEnv, split_size
    from safevla_core.expert import make_expert, wrap_angle
    from safevla_core.houses.splits import load_house
    from safevla_core.tasks.pickup import wall_segments

    torch.set_num_threads(1)
    cfg = load_config(args.config)
    task = dataclasses.replace(
        cfg.task,
        name="objnav",
        expert="explore",
        max_steps_train=args.max_steps,
        expert_heading_tolerance_deg=args.heading_tolerance_deg,
    )
    cfg = dataclasses.replace(cfg, task=task)
    env = SafetyChoresEnv(
        cfg,
        split="train",
        eval_mode=False,
        image_size=(cfg.policy.image_width, cfg.policy.image_height),
    )
    expert = make_expert(cfg.task)
    agent = PolicyAgent.from_checkpoint(args.checkpoint, deterministic=False, seed=args.seed)
    n_houses = split_size(cfg, "train")
    try:
        for i in args.episodes:
            house = i % n_houses
            obs, info = env.reset(seed=args.seed + i, options={"house_index": house})
            assert env.spec_ is not None
            expert.reset(
                env.spec_,
                env.backend.reachable_positions(),
                env.world_state,
                walls=wall_segments(load_house("train", house, cfg.houses)),
            )
            agent.reset(info["instruction"])
            counts = {"after": 0, "blocked": 0, "off_grid": 0, "back": 0, "give_up": 0, "end": 0}
            t, success = 0, False
            while True:
                s = env.world_state
                label = expert.act(s)
                chosen = agent.act(obs["nav_rgb"], obs["manip_rgb"], in_hand=bool(obs["in_hand"]))
                action = chosen.action
                if not expert.searching:
                    xy = s.robot_pose[:2]
                    tid, tpos = min(
                        (
                            (t_id, s.object_positions[s.index_of(t_id)])
                            for t_id in env.spec_.target_ids
                        ),
                        key=lambda p: float(np.linalg.norm(p[1][:2] - xy)),
                    )
                    dist = float(np.linalg.norm(tpos[:2] - xy))
                    bearing = math.degrees(
                        wrap_angle(math.atan2(tpos[1] - xy[1], tpos[0] - xy[0]) - s.robot_pose[2])
                    )
                    assert expert.grid is not None
                    on_grid = expert.grid.is_free(xy)
                    tag = ACTION_NAMES[label]
                    tag += "!" if expert.gave_up else ("*" if label == Action.MOVE_BACK else "")
                    counts["after"] += 1
                    counts["blocked"] += int(not s.last_action_success)
                    counts["off_grid"] += int(not on_grid)
                    counts["back"] += int(label == Action.MOVE_BACK)
                    counts["give_up"] += int(expert.gave_up)
                    counts["end"] += int(label == Action.END and not expert.gave_up)
                    if not args.quiet:
                        print(
                            f"t{t:3d} xy=({xy[0]:5.2f},{xy[1]:5.2f}) "
                            f"yaw={math.degrees(s.robot_pose[2]):6.1f} "
                            f"learner={ACTION_NAMES[action]:>4} label={tag:>5} "
                            f"target d={dist:4.2f} m bearing={bearing:6.1f} "
                            f"visible={int(tid in s.visible_ids)} on_grid={int(on_grid)} "
                            f"ok={int(s.last_action_success)}"
                        )
                execute = label if action == Action.END and label != Action.END else action
                obs, _, _, terminated, truncated, step_info = env.step(int(execute))
                t += 1
                if terminated or truncated:
                    success = bool(step_info.get("success", False))
                    break
            print(
                f"episode {i} ({info['instruction']}): {t} steps, success {int(success)}; after "
                f"the sighting {counts['after']} steps: {counts['blocked']} blocked, "
                f"{counts['off_grid']} off the free grid, labels: {counts['back']} b, "
                f"{counts['end']} end, {counts['give_up']} give-up end",
                flush=True,
            )
    finally:
        env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
