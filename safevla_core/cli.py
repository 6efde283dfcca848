"""The ``safevla`` command line: train, eval, collect, il, compare, bench, render, house.

Every command reads the typed :class:`~safevla_core.config.Config`, overridden by ``--config
FILE.yaml`` and then by ``--set section.key=value`` (repeatable) and the explicit flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safevla_core.config import Config, load_config, parse_dotted

_EPILOG = """examples:
  safevla train                                   # PPO-Lagrangian on Safety-ObjNav, default budget
  safevla train --method ppo --total-env-steps 20000 --out-dir runs/ppo
  safevla train --config config/train_objnav.yaml --set train.num_envs=4
  safevla eval --checkpoint runs/default/ckpt_000004.pt --episodes 10
  safevla eval --expert --episodes 50 --report-dir out/expert_objnav   # the expert's SR
  safevla collect --episodes 200 --out-dir data/objnav && safevla il --data data/objnav
  safevla compare --out-dir runs/compare                               # IL + 4 methods
  safevla render --split test --house-index 0 --out-dir out/frames
  safevla bench
  torchrun --standalone --nproc-per-node 8 -m safevla_core.cli train --set train.device=cuda
                                                  # data-parallel: 8 ranks (docs/scaling.md)
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file overriding the defaults (keys mirror safevla_core.config.Config)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. --set train.num_envs=4 (repeatable)",
    )


def _config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    overrides = parse_dotted(args.overrides)
    for section, values in (extra or {}).items():
        for k, v in values.items():
            if v is not None:
                overrides.setdefault(section, {})[k] = v
    return load_config(args.config, overrides)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safevla",
        description="SafeVLA on an embedded MuJoCo Stretch simulator: constrained RL "
        "(PPO-Lagrangian) for safe vision-language-action policies.",
        epilog=_EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a policy (default: ppo_lag on Safety-ObjNav)",
        description="Train with PPO / PPO-RS / PPO-Lagrangian / PID-Lagrangian in "
        "the embedded simulator. Writes checkpoints, config.yaml, metrics.jsonl and "
        "TensorBoard events to --out-dir; rerunning the same command resumes. Under "
        "torchrun it trains data-parallel: --num-envs and the rest are per rank, "
        "--total-env-steps counts all ranks, rank 0 writes the files (docs/scaling.md).",
    )
    _add_common(p)
    p.add_argument("--method", choices=["ppo", "ppo_rs", "ppo_lag", "ppo_pid_lag"], default=None)
    p.add_argument("--task", choices=["objnav"], default=None, help="task (objnav for now)")
    p.add_argument("--total-env-steps", type=int, default=None, help="training budget, env steps")
    p.add_argument("--num-envs", type=int, default=None, help="parallel environments (processes)")
    p.add_argument("--num-steps", type=int, default=None, help="steps per env per rollout")
    p.add_argument("--cost-limit", type=float, default=None, help="CMDP cost limit b per episode")
    p.add_argument("--out-dir", default=None, help="run folder (default runs/default)")
    p.add_argument("--init-checkpoint", default=None, help="start from this (IL) checkpoint")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out-dir")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="random initial weights instead of the shipped IL policy "
        "(checkpoints/<task>/il.pt), which `safevla train` fine-tunes by default",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on held-out houses (SR/RC/OC)",
        description="Run fixed episodes on a house split and print and write as "
        "JSON: success_rate, robot_cost, object_cost, cumulative_cost, the five "
        "component means and the episodes.",
    )
    _add_common(p)
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="training checkpoint (.pt); default: the shipped SafeVLA policy of the task "
        "(checkpoints/<task>/safevla.pt, else il.pt)",
    )
    p.add_argument(
        "--expert",
        action="store_true",
        help="evaluate the privileged shortest-path expert instead of a checkpoint",
    )
    p.add_argument(
        "--end-gate",
        type=float,
        default=None,
        metavar="P",
        help="override the checkpoint's learned end gate (mask `end` while its visibility "
        "head gives the target a probability below P of being in view; 0 = off; default: "
        "the checkpoint's own setting, written by `safevla il --end-gate`)",
    )
    p.add_argument(
        "--end-trigger",
        type=float,
        default=None,
        metavar="P",
        help="the learned stop trigger: take `end` whenever the visibility head gives the "
        "target a probability of at least P of being in view (a head trained with `safevla il "
        "--aux-label end_would_succeed`; must be above the end gate; 0 = off; default: the "
        "checkpoint's own setting, off unless set)",
    )
    p.add_argument("--task", choices=["objnav", "pickup", "fetch"], default=None)
    p.add_argument(
        "--extreme",
        action="store_true",
        help="extreme-failure episodes: the target type is absent from the house",
    )
    p.add_argument(
        "--ood",
        choices=["colour", "lighting", "material", "all"],
        default=None,
        help="appearance perturbation (needs the backend's set_appearance hook)",
    )
    p.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="also write report.md, cost_distribution.png, success_vs_cost.png here",
    )
    p.add_argument("--episodes", type=int, default=None, help="number of episodes")
    p.add_argument("--split", choices=["train", "val", "test"], default=None)
    p.add_argument("--deterministic", action="store_true", help="greedy actions")
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="sample actions from softmax(logits / T): 1 = the policy's own distribution "
        "(the authors' evaluation samples), lower values move towards greedy; not with "
        "--deterministic (default: eval.temperature, 1)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON output (default runs/eval.json)")
    p.add_argument(
        "--shard",
        default="0/1",
        metavar="K/N",
        help="run episodes K, K+N, ... of the list (N processes in parallel); "
        "join the N JSON files with --merge",
    )
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="instead of running: merge shard reports into one (--out, --report-dir)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run the episodes in this many processes here (the shards of --shard, merged "
        "into one report; each episode seeds its own sampling, so the report is the same)",
    )
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser(
        "collect",
        help="collect expert trajectories into shards (IL data)",
        description="Run the privileged expert on a house split and write "
        "compressed shards (both cameras at the policy's image size, instruction, "
        "actions, rewards, costs). Rerunning the same command resumes.",
    )
    _add_common(p)
    p.add_argument("--task", choices=["objnav", "pickup", "fetch"], default=None)
    p.add_argument("--episodes", type=int, default=100, help="episodes of the fixed list")
    p.add_argument("--episodes-per-shard", type=int, default=8)
    p.add_argument("--split", choices=["train", "val", "test"], default="train")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed SEED + i")
    p.add_argument("--keep-failures", action="store_true", help="also store failed episodes")
    p.add_argument("--out-dir", type=Path, default=Path("data/expert"))
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser(
        "dagger",
        help="DAgger data: a learner checkpoint drives, the expert labels (IL data)",
        description="Run a learner checkpoint on a house split while the privileged expert "
        "labels every state it visits (Ross et al. 2011), and write shards in the format of "
        "`safevla collect` for `safevla il --data`. A wrong `end` of the learner is labelled "
        "and replaced by the expert's action, so the episode goes on. Rerunning the same command "
        "resumes; several processes with different --seed and --out-dir collect in parallel.",
    )
    _add_common(p)
    p.add_argument("--checkpoint", type=Path, required=True, help="the learner's checkpoint")
    p.add_argument("--episodes", type=int, default=200, help="episodes of the fixed list")
    p.add_argument("--episodes-per-shard", type=int, default=8)
    p.add_argument("--split", choices=["train", "val", "test"], default="train")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed SEED + i")
    p.add_argument(
        "--expert-share",
        type=float,
        default=0.0,
        help="DAgger beta: probability of executing the expert's action",
    )
    p.add_argument("--deterministic", action="store_true", help="the learner acts greedily")
    p.add_argument(
        "--stop-at-wrong-end",
        action="store_true",
        help="a wrong `end` of the learner ends the episode (default: the expert's action runs)",
    )
    p.add_argument(
        "--label-after-sighting",
        action="store_true",
        help="with task.expert=explore: the steps the expert labels while still searching "
        "(no target seen yet; its label then heads for its own exploration goal) are kept as "
        "context and visibility labels but are no behaviour-cloning target, except where "
        "the learner chose a wrong `end` (then the label teaches it not to stop yet)",
    )
    p.add_argument("--out-dir", type=Path, default=Path("data/dagger"))
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser(
        "il",
        help="behaviour cloning on expert shards -> IL checkpoint",
        description="Train the SPOC-style policy by behaviour cloning on the "
        "shards of `safevla collect`, optionally followed by DAgger rounds (the learner drives, "
        "the privileged expert labels every state it visits), and write OUT_DIR/il.pt, a "
        "checkpoint that `safevla train --init-checkpoint` and `safevla eval` load. Resumable: "
        "finished rounds (il_r<k>.pt) and DAgger shards are kept on a rerun.",
    )
    _add_common(p)
    p.add_argument("--data", type=Path, nargs="+", required=True, help="shard folder(s)")
    p.add_argument(
        "--val-data",
        type=Path,
        nargs="*",
        default=None,
        help="validation-house shard folder(s): keep the best epoch, stop early",
    )
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience, epochs")
    p.add_argument("--out-dir", type=Path, default=Path("runs/il"))
    p.add_argument("--epochs", type=int, default=10, help="behaviour-cloning epochs (at most)")
    p.add_argument("--batch-size", type=int, default=8, help="episode windows per step")
    p.add_argument("--lr", type=float, default=3e-4, help="peak lr of the cosine schedule")
    p.add_argument(
        "--feature-dropout",
        type=float,
        default=0.0,
        help="probability of zeroing a camera patch feature (augmentation)",
    )
    p.add_argument(
        "--swap-negatives",
        type=float,
        default=1.0,
        help="weight of the instruction-swap negatives: at each expert `end`, the same inputs "
        "under an instruction naming a type absent from the house are trained towards "
        "not-`end` (ours; 0 = plain cross-entropy as SPOC)",
    )
    p.add_argument(
        "--end-weight",
        type=float,
        default=1.0,
        help="class weight of the expert's `end` steps in the cross-entropy (ours: `end` is "
        "1-2%% of the DAgger labels; 1 = plain cross-entropy as SPOC). Logged losses stay "
        "unweighted",
    )
    p.add_argument(
        "--aux-visible",
        type=float,
        default=0.0,
        help="weight of the auxiliary visibility loss: the policy's visibility head (on the "
        "decoder output) predicts whether an object of the instructed type is visible in the "
        "navigation camera (the shards' target_visible; shards collected before it have no "
        "label and are skipped; swapped instructions count as not visible). Ours, to bind the "
        "instruction to the view at every step; logs vis_loss / vis_acc. Default 0 = off",
    )
    p.add_argument(
        "--aux-label",
        choices=["target_visible", "end_would_succeed"],
        default="target_visible",
        help="the shard label the visibility head learns: target_visible (an object of the "
        "target type in view, any distance) or end_would_succeed (in view within the success "
        "distance: an `end` now would succeed; what --end-gate asks)",
    )
    p.add_argument(
        "--end-gate",
        type=float,
        default=0.0,
        metavar="P",
        help="store a learned end gate in the checkpoint: wherever the policy runs, `end` is "
        "masked while its visibility head gives the target a probability below P of being in "
        "view (ours; needs --aux-visible > 0; BC itself trains with the gate off; validation "
        "logs the share of expert ends the gate passes). Default 0 = off",
    )
    p.add_argument(
        "--keep-epochs",
        action="store_true",
        help="also write every epoch's weights to il_r0.epoch<N>.pt (each can be evaluated)",
    )
    p.add_argument(
        "--init-checkpoint",
        type=Path,
        default=None,
        help="start behaviour cloning from these weights (e.g. checkpoints/objnav/il.pt)",
    )
    p.add_argument("--dagger-rounds", type=int, default=0, help="DAgger rounds after BC")
    p.add_argument("--dagger-episodes", type=int, default=200, help="learner episodes per round")
    p.add_argument("--dagger-epochs", type=int, default=4, help="epochs of training per round")
    p.add_argument(
        "--expert-share",
        type=float,
        default=0.0,
        help="DAgger beta: probability of executing the expert's action",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser(
        "compare",
        help="IL -> ppo, ppo_rs, ppo_lag over seeds -> Table 1 with CIs (resumable)",
        description="The headline experiment: from one IL checkpoint (given, or made here from "
        "expert data), fine-tune it with each RL method under the same budget for several "
        "seeds, evaluate every policy on the same fixed test episodes, and write "
        "OUT_DIR/report/{summary.json,comparison.md,curves.png,cost_distribution.png} after "
        "every evaluation. Every stage resumes when rerun: kill it at any time and run the "
        "same command again (over several days if needed).",
    )
    _add_common(p)
    p.add_argument("--out-dir", type=Path, default=Path("runs/compare"))
    p.add_argument(
        "--il-checkpoint",
        type=Path,
        default=None,
        help="start from this IL checkpoint (else: collect expert data and run BC)",
    )
    p.add_argument("--il-episodes", type=int, default=200, help="expert episodes (no IL given)")
    p.add_argument("--il-epochs", type=int, default=10, help="BC epochs (no IL given)")
    p.add_argument("--rl-env-steps", type=int, default=100_000, help="per run")
    p.add_argument("--eval-episodes", type=int, default=200, help="test episodes per policy")
    p.add_argument("--seeds", type=int, default=3, help="runs per method (train.seed + k)")
    p.add_argument("--methods", default="ppo,ppo_rs,ppo_lag", help="comma-separated RL methods")
    p.add_argument("--seed", type=int, default=None, help="train.seed of the first run")
    p.add_argument(
        "--cost-limit-fraction",
        type=float,
        default=None,
        help="set the constrained methods' cost limit to this fraction of a baseline's "
        "episode cost, the paper's rule (0.2); default: task.cost_limit",
    )
    p.add_argument(
        "--cost-limit-from",
        choices=["il", "ppo"],
        default="il",
        help="the baseline of that rule: IL on the validation houses (default) or "
        "ppo seed 0's converged training cost",
    )
    p.add_argument(
        "--eval-workers",
        type=int,
        default=1,
        help="evaluate each policy in this many processes (safevla eval --workers)",
    )
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser(
        "render",
        help="save both cameras of a house as PNG",
        description="Reset the simulator in a house and save nav_rgb.png and "
        "manip_rgb.png (what the robot sees).",
    )
    _add_common(p)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--house-index", type=int, default=0)
    p.add_argument(
        "--house-file",
        type=Path,
        default=None,
        help="a ProcTHOR-schema house (.json or .jsonl.gz; raw ProcTHOR houses are "
        "imported with sizes from the asset database)",
    )
    p.add_argument(
        "--asset-db",
        type=Path,
        default=None,
        help="ProcTHOR asset-database JSON (default: $SAFEVLA_ASSET_DATABASE or the "
        "installed procthor package)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=None, help="default: sim.width (384)")
    p.add_argument("--height", type=int, default=None, help="default: sim.height (224)")
    p.add_argument(
        "--actions", default="", help="comma-separated actions to take first, e.g. m,m,l"
    )
    p.add_argument("--out-dir", type=Path, default=Path("out/frames"))

    p = sub.add_parser(
        "bench",
        help="measure simulator, encoder, policy, training speed and learner memory",
        description="Measures on this machine, in one run, and prints (--json FILE also "
        "writes them, same keys): sim_actions_per_s (both cameras at the training size), "
        "sim_physics_actions_per_s, sim_actions_per_s_paper_size (384x224); "
        "encoder_ms_per_image_b1 and encoder_ms_per_image_batched (num_envs x 2 images); "
        "fusion_ms; act_cached_ms and act_no_cache_ms (the causal decoder at a 100-step "
        "context, with and without the KV cache) and kv_cache_speedup; "
        "train_env_steps_per_s, collect_env_steps_per_s, update_share and "
        "train_to_sim_ratio for the given config, and train_env_steps_per_s_compare_cpu, "
        "update_share_compare_cpu, train_to_sim_ratio_compare_cpu for "
        "config/compare_cpu.yaml; learner_peak_rss_mb (the given config, a short run) and "
        "learner_peak_rss_mb_paper (config/paper.yaml: the full rollout buffer, networks, "
        "optimizer and one PPO micro-batch, in a separate process; an estimate, not a run).",
    )
    _add_common(p)
    p.add_argument("--sim-steps", type=int, default=200, help="actions per simulator measurement")
    p.add_argument("--skip-train", action="store_true", help="skip the end-to-end training run")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")

    p = sub.add_parser("house", help="write a generated house as ProcTHOR-schema JSON")
    _add_common(p)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--house-index", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="file (default: stdout)")
    p.add_argument(
        "--export-thor",
        action="store_true",
        help="write the house as AI2-THOR's CreateHouse loads it: real asset ids from "
        "ProcTHOR's asset database, materials, proceduralParameters "
        "(safevla_core/houses/thor_export.py)",
    )
    p.add_argument(
        "--drop-unavailable",
        action="store_true",
        help="with --export-thor: drop objects whose type has no THOR asset instead "
        "of refusing the house",
    )
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    """``safevla train`` (data-parallel when launched by torchrun)."""
    from safevla_core.rl import distributed
    from safevla_core.rl.train import train

    cfg = _config(
        args,
        {
            "train": {
                "method": args.method,
                "total_env_steps": args.total_env_steps,
                "num_envs": args.num_envs,
                "num_steps": args.num_steps,
                "out_dir": args.out_dir,
                "init_checkpoint": args.init_checkpoint,
                "seed": args.seed,
            },
            "task": {"name": args.task, "cost_limit": args.cost_limit},
        },
    )
    ctx = distributed.init_distributed(cfg.train.device)  # torchrun's ranks, else rank 0 of 1
    if cfg.train.init_checkpoint is None and not args.from_scratch:
        from safevla_core.shipped import shipped_checkpoint

        il = shipped_checkpoint(cfg.task.name, "il")
        if il is not None:
            if ctx.is_main:
                print(f"fine-tuning the shipped IL policy {il} (--from-scratch: random weights)")
            cfg = dataclasses.replace(
                cfg, train=dataclasses.replace(cfg.train, init_checkpoint=str(il))
            )
    try:
        result = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    finally:
        distributed.shutdown()
    if not ctx.is_main:
        return 0
    print(
        f"done: {result.iterations} iterations, {result.env_steps} env steps; run folder "
        f"{result.run_dir} (tensorboard --logdir {result.run_dir / 'tb'})"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``safevla eval``."""
    from safevla_core.evaluate import evaluate_parallel, format_report, write_report

    cfg = _config(args, {"task": {"name": args.task}})
    if args.merge:
        from safevla_core.evaluate import merge_reports

        report = merge_reports([json.loads(p.read_text()) for p in args.merge])
        out = write_report(report, args.out or cfg.eval.out)
        print(format_report(report))
        print(f"wrote {out}")
        if args.report_dir is not None:
            from safevla_core.report import write_eval_report

            paths = write_eval_report(report, args.report_dir, title=str(report["checkpoint"]))
            print(f"wrote {', '.join(str(p) for p in paths.values())}")
        return 0
    try:
        k, n = (int(x) for x in args.shard.split("/"))
    except ValueError as exc:
        raise ValueError(f"--shard must be K/N, e.g. 0/2, got {args.shard!r}") from exc
    if args.workers > 1 and n > 1:
        raise ValueError("give --workers (shards run here) or --shard K/N (one shard), not both")
    if args.temperature is not None and args.deterministic:
        raise ValueError("give --deterministic (greedy) or --temperature (sampled), not both")
    if args.temperature is not None:  # EvalConfig checks it before any process starts
        cfg = dataclasses.replace(
            cfg, eval=dataclasses.replace(cfg.eval, temperature=args.temperature)
        )
    if args.checkpoint is None and not args.expert:
        from safevla_core.shipped import default_eval_checkpoint

        args.checkpoint = default_eval_checkpoint(cfg.task.name)
        if args.checkpoint is None:
            raise ValueError(
                f"no shipped {cfg.task.name} checkpoint: give --checkpoint FILE or --expert"
            )
        print(f"evaluating the shipped policy {args.checkpoint}")
    try:
        report = evaluate_parallel(
            cfg,
            None if args.expert else args.checkpoint,
            workers=args.workers,
            episodes=args.episodes,
            split=args.split,
            deterministic=True if args.deterministic else None,
            progress=not args.no_progress,
            extreme=args.extreme,
            ood=args.ood,
            agent="expert" if args.expert else None,
            end_gate=args.end_gate,
            end_trigger=args.end_trigger,
            **({"shard": (k, n)} if n > 1 else {}),
        )
    except NotImplementedError as exc:
        print(f"safevla eval: error: {exc}", file=sys.stderr)
        return 2
    out = write_report(report, args.out or cfg.eval.out)
    print(format_report(report))
    print(f"wrote {out}")
    if args.report_dir is not None:
        from safevla_core.report import write_eval_report

        title = f"{'expert' if args.expert else args.checkpoint} on {cfg.task.name}"
        paths = write_eval_report(report, args.report_dir, title=title)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _collect_on_ranks(run: Callable[[], dict[str, Any]]) -> int:
    """Run a shard collection on this process's rank (CPU, gloo) and print its JSON summary.

    Under torchrun each rank collects its share of the shards; rank 0 prints the figures,
    which the collection has summed over ranks.
    """
    from safevla_core.rl import distributed

    ctx = distributed.init_distributed("cpu")  # the simulator and the expert run on the CPU
    try:
        info = run()
    finally:
        distributed.shutdown()
    if ctx.is_main:
        print(json.dumps(info))
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """``safevla collect`` (under torchrun each rank collects its share of the shards)."""
    from safevla_core.il import collect

    cfg = _config(args, {"task": {"name": args.task}})
    return _collect_on_ranks(
        lambda: collect(
            cfg,
            args.out_dir,
            args.episodes,
            split=args.split,
            episodes_per_shard=args.episodes_per_shard,
            seed=args.seed,
            keep_failures=args.keep_failures,
            progress=not args.no_progress,
        )
    )


def cmd_dagger(args: argparse.Namespace) -> int:
    """``safevla dagger`` (under torchrun each rank collects its share of the shards)."""
    import torch

    from safevla_core.il import dagger_collect

    cfg = _config(args)
    torch.set_num_threads(cfg.train.torch_threads)
    return _collect_on_ranks(
        lambda: dagger_collect(
            cfg,
            args.checkpoint,
            args.out_dir,
            args.episodes,
            split=args.split,
            episodes_per_shard=args.episodes_per_shard,
            seed=args.seed,
            expert_share=args.expert_share,
            progress=not args.no_progress,
            deterministic=args.deterministic,
            continue_past_wrong_end=not args.stop_at_wrong_end,
            label_after_sighting=args.label_after_sighting,
        )
    )


def cmd_il(args: argparse.Namespace) -> int:
    """``safevla il`` (under torchrun: DDP behaviour cloning, sharded DAgger collection)."""
    import torch

    from safevla_core.il import imitation
    from safevla_core.rl import distributed

    cfg = _config(args)
    torch.set_num_threads(cfg.train.torch_threads)
    ctx = distributed.init_distributed("cpu")  # behaviour cloning runs on the CPU (gloo)
    try:
        path = imitation(
            cfg,
            args.data,
            args.out_dir,
            epochs=args.epochs,
            dagger_rounds=args.dagger_rounds,
            dagger_episodes=args.dagger_episodes,
            dagger_epochs=args.dagger_epochs,
            expert_share=args.expert_share,
            val_data=args.val_data or None,
            progress=not args.no_progress,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            patience=args.patience,
            feature_dropout=args.feature_dropout,
            swap_negatives=args.swap_negatives,
            end_weight=args.end_weight,
            aux_visible=args.aux_visible,
            end_gate=args.end_gate,
            keep_epochs=args.keep_epochs,
            aux_label=args.aux_label,
            init_checkpoint=args.init_checkpoint,
        )
    finally:
        distributed.shutdown()
    if ctx.is_main:
        print(f"wrote {path} (start RL with: safevla train --init-checkpoint {path})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``safevla compare``."""
    from safevla_core.compare import ComparisonBudget, run_comparison

    cfg = _config(args, {"train": {"seed": args.seed}})
    budget = ComparisonBudget(
        args.il_episodes, args.il_epochs, args.rl_env_steps, args.eval_episodes, args.seeds
    )
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    command = "safevla " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["compare"] else ""
    result = run_comparison(
        cfg,
        args.out_dir,
        budget,
        methods,
        command=command,
        progress=not args.no_progress,
        il_checkpoint=args.il_checkpoint,
        cost_limit_fraction=args.cost_limit_fraction,
        cost_limit_from=args.cost_limit_from,
        eval_workers=args.eval_workers,
    )
    print(result["paths"]["markdown"].read_text())
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """``safevla render``."""
    import matplotlib.image

    from safevla_core.actions import parse_action
    from safevla_core.env import make_backend
    from safevla_core.houses.procthor_import import AssetDatabase, load_house_file_any
    from safevla_core.houses.splits import load_house

    cfg = _config(args)
    if args.house_file is not None:
        house = load_house_file_any(args.house_file, AssetDatabase(args.asset_db))
        house = house[0] if isinstance(house, list) else house
    else:
        house = load_house(args.split, args.house_index, cfg.houses)
    backend = make_backend(cfg, args.width or cfg.sim.width, args.height or cfg.sim.height)
    try:
        backend.reset(house, seed=args.seed)
        for name in filter(None, (a.strip() for a in args.actions.split(","))):
            backend.step(parse_action(name))
        frames = backend.render()
    finally:
        backend.close()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for key, img in frames.items():
        path = args.out_dir / f"{key}.png"
        matplotlib.image.imsave(path, img)
        print(f"wrote {path} ({img.shape[1]}x{img.shape[0]})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``safevla bench``."""
    from safevla_core.bench import format_bench, run_bench

    cfg = _config(args)
    figures = run_bench(cfg, sim_steps=args.sim_steps, train=not args.skip_train)
    print(format_bench(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def cmd_house(args: argparse.Namespace) -> int:
    """``safevla house``."""
    from safevla_core.houses.splits import load_house

    cfg = _config(args)
    house = load_house(args.split, args.house_index, cfg.houses)
    if args.export_thor:  # refusals are ValueErrors: main() prints them and exits 2
        from safevla_core.houses.thor_export import export_house_for_thor

        house = export_house_for_thor(house, drop_unavailable=args.drop_unavailable)
    text = json.dumps(house, indent=1)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "render": cmd_render,
    "bench": cmd_bench,
    "house": cmd_house,
    "collect": cmd_collect,
    "dagger": cmd_dagger,
    "il": cmd_il,
    "compare": cmd_compare,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``safevla`` console script; returns the exit code.

    Errors a user can fix (bad config, missing or corrupt checkpoint, unknown asset id) print
    one clear line and exit 2 instead of a traceback (``SAFEVLA_DEBUG=1`` re-raises them).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = _parser().parse_args(argv)
    from safevla_core.checkpoint import CheckpointError

    try:
        return COMMANDS[args.command](args)
    except (ValueError, KeyError, FileNotFoundError, FloatingPointError, CheckpointError) as exc:
        if os.environ.get("SAFEVLA_DEBUG"):
            raise
        print(
            f"safevla {args.command}: error: {exc} (SAFEVLA_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(
            f"safevla {args.command}: interrupted (finished checkpoints are kept; rerun to resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
