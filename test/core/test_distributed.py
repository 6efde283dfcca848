"""Data-parallel training: collectives with hand-worked numbers, and 2 gloo ranks training.

The multi-process tests launch ranks the way users do, with ``torchrun`` (``python -m
torch.distributed.run --standalone``, a free port on localhost), and wait for them with a
timeout. The workers end with ``os._exit(0)`` after ``destroy_process_group``: gloo's C++
teardown at interpreter exit sometimes aborts after all work is done (see test_rl.py).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed

from safevla_core.checkpoint import latest_checkpoint, load_checkpoint
from safevla_core.config import load_config
from safevla_core.costs import SIGNAL_SUMMARY_KEYS
from safevla_core.rl import distributed

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Seconds to wait for a torchrun job (2 shared cores; the trainer job loads the simulator).
JOB_TIMEOUT_S = 600

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="this torch build has no gloo backend for CPU collectives",
)


def _python(code: str, args: list[str], tmp_path: Path) -> None:
    """Run ``code`` in a fresh single Python process (no process group)."""
    script = tmp_path / f"single_{len(list(tmp_path.glob('single_*.py')))}.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def _torchrun(script: Path, args: list[str], nproc: int = 2) -> None:
    """Run ``script`` on ``nproc`` ranks with torchrun; fail with the ranks' stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        str(script),
        *args,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]


# -- single process: the identity path ----------------------------------------------------------
def test_shard_is_round_robin_and_covers_every_house():
    assert distributed.shard(5, 0, 2) == [0, 2, 4]
    assert distributed.shard(5, 1, 2) == [1, 3]
    assert distributed.shard(2, 3, 4) == [1]  # more ranks than houses: shared, none left out
    assert sorted(h for r in range(3) for h in distributed.shard(7, r, 3)) == list(range(7))
    with pytest.raises(ValueError):
        distributed.shard(5, 2, 2)


def test_rank_seeds_keep_rank_0_and_never_overlap_vector_env_seeds():
    assert distributed.rank_seed(7, 0) == 7
    assert distributed.rank_seed(7, 1) == 7 + distributed.RANK_SEED_STRIDE
    # a vector env seeds env i with seed + i: 64 envs per rank stay disjoint
    seeds = [distributed.rank_seed(0, r) + i for r in range(8) for i in range(64)]
    assert len(set(seeds)) == len(seeds)


def test_env_resets_only_into_its_house_shard():
    from safevla_core.env import SafetyChoresEnv
    from safevla_core.houses.splits import load_house

    cfg = load_config(None, {"houses": {"num_train": 3, "num_val": 1, "num_test": 1}})
    with pytest.raises(ValueError):
        SafetyChoresEnv(cfg, house_indices=[3])
    env = SafetyChoresEnv(cfg, house_indices=[1])
    try:
        ids = {env.reset(seed=s)[1]["house_id"] for s in range(4)}
    finally:
        env.close()
    assert ids == {str(load_house("train", 1, cfg.houses)["id"])}


def test_without_process_group_the_collectives_are_local():
    assert not distributed.is_initialized()
    assert distributed.context() == distributed.DistContext(0, 1, 0, None)
    means, count = distributed.episode_means([{"c": 1.0}, {"c": 4.0, "s": 1.0}], ["c", "s", "x"])
    assert means == {"c": 2.5, "s": 1.0} and count == 2
    assert distributed.episode_means([], ["c"]) == ({}, 0)
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [6.0, 0.0]])
    mean, std = distributed.global_mean_std(x)
    assert torch.equal(mean, x.mean(0)) and torch.equal(std, x.std(0))
    assert distributed.all_reduce_min(3) == 3 and distributed.any_rank(True)
    # no process group: nothing to launch, rank 0 of 1
    assert distributed.init_distributed("cpu") == distributed.DistContext()


# -- two ranks: the collectives -----------------------------------------------------------------
_PRIMITIVES = textwrap.dedent("""
    import json, math, os, sys
    import torch
    from safevla_core.rl import distributed as d

    ctx = d.init_distributed("cpu")
    r = ctx.rank
    out = {"ctx": [ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend]}
    out["min"] = d.all_reduce_min(r + 3)
    out["any"] = [d.any_rank(r == 1), d.any_rank(False)]
    out["mean"] = d.all_reduce_mean([1.0, 5.0][r])
    eps = [[{"c": 1.0, "s": 1.0}, {"c": 3.0}], [{"c": 8.0, "s": 0.0}]][r]
    out["episodes"] = d.episode_means(eps, ["c", "s"])
    out["one_rank_finished"] = d.episode_means([[], [{"c": 2.0}]][r], ["c"])
    out["none_finished"] = d.episode_means([], ["c"])
    x = [torch.tensor([[1.0, 10.0], [2.0, 20.0]]),
         torch.tensor([[3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])][r]
    m, s = d.global_mean_std(x)
    out["mean_std"] = [m.tolist(), s.tolist()]
    a, b, c = (torch.nn.Parameter(torch.zeros(n)) for n in (2, 1, 1))
    a.grad = torch.tensor([[1.0, 2.0], [3.0, 4.0]][r])
    b.grad = None if r == 0 else torch.tensor([5.0])
    d.all_reduce_gradients([a, b, c], cap_bytes=8)  # 8 bytes: one bucket per parameter
    out["grads"] = [a.grad.tolist(), b.grad.tolist(), c.grad is None]
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(10.0 + r)
    d.broadcast_module(net)
    out["broadcast"] = net.weight.tolist()
    with open(os.path.join(sys.argv[1], f"out{r}.json"), "w") as fh:
        json.dump(out, fh)
    d.shutdown()
    sys.stdout.flush()
    os._exit(0)
""")


@needs_gloo
def test_collectives_across_two_gloo_ranks(tmp_path):
    script = tmp_path / "primitives.py"
    script.write_text(_PRIMITIVES)
    _torchrun(script, [str(tmp_path)])
    for r in range(2):
        out = json.loads((tmp_path / f"out{r}.json").read_text())
        assert out["ctx"] == [r, 2, r, "gloo"]
        assert out["min"] == 3
        assert out["any"] == [True, False]
        assert out["mean"] == 3.0
        # 3 episodes, costs 1, 3, 8: 12 / 3 = 4 (a mean of per-rank means would say 5);
        # "s" is in two of them: (1 + 0) / 2
        assert out["episodes"] == [{"c": 4.0, "s": 0.5}, 3]
        assert out["one_rank_finished"] == [{"c": 2.0}, 1]  # rank 0 finished none
        assert out["none_finished"] == [{}, 0]  # the caller skips the multiplier update
        # rows 1..5 and 10..50: mean 3 and 30, unbiased variance 10/4 and 1000/4
        mean, std = out["mean_std"]
        assert mean == pytest.approx([3.0, 30.0], abs=1e-6)
        assert std == pytest.approx([math.sqrt(2.5), math.sqrt(250.0)], abs=1e-5)
        # a: summed; b: rank 0 had none (zeros), so rank 1's; c: None everywhere stays None
        assert out["grads"] == [[4.0, 6.0], [5.0], True]
        assert out["broadcast"] == [[10.0, 10.0]]  # rank 0's weights everywhere


# -- two ranks: training ------------------------------------------------------------------------
_TRAINER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import torch
    from safevla_core.config import load_config
    from safevla_core.rl import distributed
    from safevla_core.rl.train import Trainer

    overrides, dump = json.loads(sys.argv[1]), Path(sys.argv[2])
    run_dir = os.path.abspath(overrides["train"]["out_dir"])
    writes = []

    def _path(p):
        return os.path.abspath(os.fsdecode(p)) if isinstance(p, (str, bytes, os.PathLike)) else ""

    def audit(event, args):  # every file this process writes, renames or creates in the run
        if event == "open":
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            mode = str(args[1] or "")
            writing = any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR)
            if writing and _path(args[0]).startswith(run_dir):
                writes.append(f"open {_path(args[0])}")
        elif event in ("os.rename", "os.mkdir", "os.remove"):
            if any(_path(a).startswith(run_dir) for a in args[:2]):
                writes.append(f"{event} {args[:2]}")

    sys.addaudithook(audit)
    ctx = distributed.init_distributed("cpu")
    rank = ctx.rank
    trainer = Trainer(load_config(None, overrides), resume=False, progress=False)
    real_collect, real_update = trainer.collect, trainer.update_policy
    real_step = trainer.optimizer.step
    local_episodes = []

    def collect(envs, buf, state):
        episodes = real_collect(envs, buf, state)
        local_episodes.append(episodes)
        return episodes

    def update_policy(buf, adv, warmup=False):
        if trainer.iteration > 0:
            return real_update(buf, adv, warmup)
        # the first update: its inputs and its summed gradients, for the single-process oracle
        torch.save({"buf": buf, "adv": adv, "warmup": warmup,
                    "model": {k: v.clone() for k, v in trainer.model.state_dict().items()},
                    "multiplier": trainer.multiplier.state_dict()}, dump / f"in{rank}.pt")
        grads = []

        def step(*args, **kwargs):
            grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters()
                          if p.grad is not None})
            return real_step(*args, **kwargs)

        trainer.optimizer.step = step
        stats = real_update(buf, adv, warmup)
        del trainer.optimizer.step
        torch.save({"grads": grads[0], "steps": len(grads),
                    "model": {k: v.clone() for k, v in trainer.model.state_dict().items()}},
                   dump / f"out{rank}.pt")
        return stats

    trainer.collect, trainer.update_policy = collect, update_policy
    iters = []

    def callback(metrics, obs):
        iters.append({"metrics": metrics, "multiplier": trainer.multiplier.state_dict(),
                      "model": {k: v.clone() for k, v in trainer.model.state_dict().items()}})

    result = trainer.run(callback)
    torch.save({"iters": iters, "episodes": local_episodes, "writes": writes,
                "shard": trainer.house_shard(), "env_steps": result.env_steps},
               dump / f"rank{rank}.pt")
    distributed.shutdown()
    sys.stdout.flush()
    os._exit(0)
""")

_REFERENCE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from safevla_core.config import load_config
    from safevla_core.rl.rollout import RolloutBuffer
    from safevla_core.rl.train import Trainer

    overrides, dump = json.loads(sys.argv[1]), Path(sys.argv[2])
    ins = [torch.load(dump / f"in{r}.pt", weights_only=False) for r in range(2)]
    a, b = ins[0]["buf"], ins[1]["buf"]
    # one T x (B0 + B1) rollout holding each rank's envs side by side (rank 0's first)
    buf = RolloutBuffer(a.T, a.B + b.B, a.costs.shape[-1], embed_dim=a.step_emb.shape[-1])
    for name in ("step_emb", "prev_action", "in_hand", "episode_step", "actions", "log_probs",
                 "values_reward", "values_cost", "rewards", "costs", "dones"):
        setattr(buf, name, torch.cat([getattr(a, name), getattr(b, name)], dim=1))
    buf.instructions = a.instructions + b.instructions
    buf.text_id = torch.cat([a.text_id, b.text_id + len(a.instructions)], dim=1)
    buf.prefix = {
        n: type(p)([torch.cat(x) for x in zip(p.keys, b.prefix[n].keys)],
                   [torch.cat(x) for x in zip(p.values, b.prefix[n].values)],
                   torch.cat([p.valid, b.prefix[n].valid]))
        for n, p in a.prefix.items()
    }
    buf.t = a.T
    adv = {k: torch.cat([ins[0]["adv"][k], ins[1]["adv"][k]], dim=1) for k in ins[0]["adv"]}
    ref = Trainer(load_config(None, overrides), resume=False, progress=False)
    ref.model.load_state_dict(ins[0]["model"])
    ref.multiplier.load_state_dict(ins[0]["multiplier"])
    grads, real_step = [], ref.optimizer.step

    def step(*args, **kwargs):
        grads.append({n: p.grad.clone() for n, p in ref.model.named_parameters()
                      if p.grad is not None})
        return real_step(*args, **kwargs)

    ref.optimizer.step = step
    ref.update_policy(buf, adv, warmup=ins[0]["warmup"])
    torch.save({"grads": grads[0], "steps": len(grads), "model": ref.model.state_dict()},
               dump / "reference.pt")
""")

_RESUME = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from safevla_core.config import load_config
    from safevla_core.rl.train import train

    overrides, dump = json.loads(sys.argv[1]), Path(sys.argv[2])
    result = train(load_config(None, overrides), resume=True, progress=False)
    (dump / "resume.json").write_text(json.dumps({
        "iterations": result.iterations, "env_steps": result.env_steps,
        "history": [int(m["iteration"]) for m in result.history]}))
""")

T_STEPS = 8


def _overrides(out_dir: Path, num_envs: int = 1, total: int = 3 * 2 * T_STEPS) -> dict:
    return {
        "houses": {"num_train": 3, "num_val": 1, "num_test": 1},
        "task": {"max_steps_train": 6},  # every env finishes an episode in each rollout
        "policy": {
            "d_model": 32,
            "num_heads": 4,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "context_steps": 8,
        },
        # one minibatch (the paper's), advantages normalised over the global batch, a lr and a
        # clip large enough that a wrong gradient shows in the weights beyond 1e-5
        "ppo": {
            "update_epochs": 2,
            "num_minibatches": 1,
            "normalize_advantages": True,
            "lr": 1e-3,
            "critic_lr": 1e-3,
            "max_grad_norm": 1e6,
            "microbatch_steps": 5,
        },
        "train": {
            "method": "ppo_lag",
            "num_envs": num_envs,
            "num_steps": T_STEPS,
            "total_env_steps": total,
            "vector": "sync",
            "out_dir": str(out_dir),
            "torch_threads": 1,
            "critic_warmup_env_steps": 0,
        },
    }


@needs_gloo
def test_two_gloo_ranks_train_as_one_process_on_the_union_of_their_rollouts(tmp_path):
    run = tmp_path / "run"
    dump = tmp_path / "dump"
    dump.mkdir()
    script = tmp_path / "trainer.py"
    script.write_text(_TRAINER)
    overrides = _overrides(run)
    _torchrun(script, [json.dumps(overrides), str(dump)])
    ranks = [torch.load(dump / f"rank{r}.pt", weights_only=False) for r in range(2)]
    cfg = load_config(None, overrides)
    keys = [SIGNAL_SUMMARY_KEYS[n] for n in cfg.task.constraints()]

    # 3 iterations of 2 ranks x 1 env x 8 steps; each rank its own houses of the 3
    assert [len(r["iters"]) for r in ranks] == [3, 3]
    assert ranks[0]["env_steps"] == ranks[1]["env_steps"] == 48
    assert ranks[0]["shard"] == [0, 2] and ranks[1]["shard"] == [1]

    before = None
    for i in range(3):
        m0, m1 = (r["iters"][i] for r in ranks)
        # the same weights on both ranks after every update, and they moved
        for k, v in m0["model"].items():
            assert torch.equal(v, m1["model"][k]), f"iteration {i + 1}: {k} differs"
        if before is not None:
            assert any(not torch.equal(v, before[k]) for k, v in m0["model"].items())
        before = m0["model"]
        # the same lambda, from J_c over both ranks' finished episodes (not a mean of means)
        assert m0["multiplier"] == m1["multiplier"]
        assert m0["metrics"]["lagrange_multiplier"] == m1["metrics"]["lagrange_multiplier"]
        eps = ranks[0]["episodes"][i] + ranks[1]["episodes"][i]
        assert len(ranks[0]["episodes"][i]) > 0 and len(ranks[1]["episodes"][i]) > 0
        jc = sum(e[k] for e in eps for k in keys) / len(eps)
        assert m0["metrics"]["episodes"] == len(eps)
        assert m0["metrics"]["cost_estimate"] == pytest.approx(jc, rel=1e-12)
        assert m0["metrics"]["env_steps"] == 16.0 * (i + 1)
    # the first Adam step of the multiplier (lr 0.035 from 0.001) is lr * sign(J_c - b)
    first = ranks[0]["iters"][0]["metrics"]
    b = cfg.task.cost_limit
    assert first["lagrange_multiplier"] == pytest.approx(
        0.036 if first["cost_estimate"] > b else 0.0, abs=1e-6
    )

    # the global batch is the union of both rollouts: one process updating on the
    # concatenated rollout (2 envs) from the same weights and lambda gives the same gradient
    # and, after 2 epochs of Adam, the same weights (in a fresh process: a Trainer in this
    # one would change the RNG stream of later tests, the encoders load once per process)
    outs = [torch.load(dump / f"out{r}.pt", weights_only=False) for r in range(2)]
    ref_dir = tmp_path / "ref"
    _python(_REFERENCE, [json.dumps(_overrides(ref_dir, num_envs=2)), str(dump)], tmp_path)
    ref = torch.load(dump / "reference.pt", weights_only=False)
    assert ref["steps"] == outs[0]["steps"] == 2  # 2 epochs x 1 minibatch
    assert set(ref["grads"]) == set(outs[0]["grads"])
    for n, g in ref["grads"].items():
        torch.testing.assert_close(outs[0]["grads"][n], g, rtol=1e-4, atol=1e-6, msg=n)
        assert torch.equal(outs[0]["grads"][n], outs[1]["grads"][n])
    for k, v in outs[0]["model"].items():
        torch.testing.assert_close(v, ref["model"][k], rtol=0, atol=1e-5, msg=k)

    # only rank 0 wrote to the run folder
    assert ranks[1]["writes"] == []
    assert any("metrics.jsonl" in w for w in ranks[0]["writes"])
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1.0, 2.0, 3.0]
    assert latest_checkpoint(run).name == "ckpt_000003.pt"

    # resume with one rank (1 env): the counters continue from the 2-rank run
    state = load_checkpoint(latest_checkpoint(run))
    assert (state["iteration"], state["env_steps"]) == (3, 48)
    _python(_RESUME, [json.dumps(_overrides(run, total=48 + T_STEPS)), str(dump)], tmp_path)
    again = json.loads((dump / "resume.json").read_text())
    assert (again["iterations"], again["env_steps"]) == (4, 56)
    assert again["history"] == [4]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1.0, 2.0, 3.0, 4.0]


# -- two ranks: imitation learning --------------------------------------------------------------
_SMALL = [
    "--set",
    "houses.num_train=3",
    "--set",
    "houses.num_val=1",
    "--set",
    "houses.num_test=1",
    "--set",
    "task.max_steps_train=8",
    "--set",
    "policy.d_model=32",
    "--set",
    "policy.num_heads=4",
    "--set",
    "policy.encoder_layers=1",
    "--set",
    "policy.decoder_layers=1",
    "--set",
    "train.torch_threads=1",
]


def _cli(args: list[str], nproc: int | None) -> None:
    """``safevla ARGS`` in a fresh process, or on ``nproc`` ranks with torchrun."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable]
    if nproc is not None:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    proc = subprocess.run(
        [*launch, "-m", "safevla_core.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


@needs_gloo
def test_two_ranks_collect_the_single_process_shards_and_clone_with_ddp(tmp_path):
    from safevla_core.il import load_shard

    collect = [
        "collect",
        "--episodes",
        "3",
        "--episodes-per-shard",
        "1",
        "--keep-failures",
        "--no-progress",
        *_SMALL,
    ]
    _cli([*collect, "--out-dir", str(tmp_path / "two")], nproc=2)
    _cli([*collect, "--out-dir", str(tmp_path / "one"), "--episodes", "1"], nproc=None)
    # rank 0 wrote shards 0 and 2, rank 1 shard 1: the episode list a single process runs
    two = sorted(p.name for p in (tmp_path / "two").glob("shard_*.npz"))
    assert two == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
    a, b = load_shard(tmp_path / "two" / two[0]), load_shard(tmp_path / "one" / two[0])
    assert set(a) == set(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key

    _cli(
        [
            "il",
            "--data",
            str(tmp_path / "two"),
            "--epochs",
            "2",
            "--batch-size",
            "1",
            "--aux-visible",
            "1.0",
            "--end-gate",
            "0.3",
            "--out-dir",
            str(tmp_path / "il"),
            "--no-progress",
            *_SMALL,
        ],
        nproc=2,
    )
    rows = [json.loads(x) for x in (tmp_path / "il" / "il_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1.0, 2.0]  # rank 0 alone logs
    # the policy's visibility head trains on both ranks (DDP averages its gradients)
    assert all(0.0 <= r["vis_acc"] <= 1.0 and r["vis_loss"] > 0.0 for r in rows)
    assert all(0.0 <= r["val_gate_end"] <= 1.0 for r in rows if "val_gate_end" in r)
    state = load_checkpoint(tmp_path / "il" / "il.pt", required_keys=("policy",))
    assert state["iteration"] == 0
    assert state["config"]["policy"]["end_gate"] == 0.3
    assert "visible_head.weight" in state["policy"]
