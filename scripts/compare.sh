#!/usr/bin/env bash
# The headline experiment on Safety-ObjNav (paper Table 1), resumable over days:
# IL -> ppo (FLaRe), ppo_rs (FLaRe-RS), ppo_lag (SafeVLA), 3 seeds each, 100k env steps per run,
# every policy on the same 200 test-house episodes with 95% bootstrap CIs ->
# OUT_DIR/report/{summary.json,comparison.md,curves.png,cost_distribution.png}.
# Kill it at any time; the same command continues where it stopped.
#
#   IL=runs/il_objnav/il.pt scripts/compare.sh     # from a finished IL checkpoint
#   TINY=1 scripts/compare.sh                      # a few-minute smoke run of the pipeline
#
# Extra arguments go to `safevla compare` (e.g. --seeds 1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1 LP_NUM_THREADS=1 MUJOCO_GL=${MUJOCO_GL:-egl} HF_HUB_OFFLINE=1

if [[ "${TINY:-0}" == "1" ]]; then
  OUT=${OUT_DIR:-runs/compare_tiny}
  exec "$PY" -m safevla_core.cli compare --out-dir "$OUT" --il-episodes 8 --il-epochs 2 \
    --rl-env-steps 128 --eval-episodes 4 --seeds 1 --seed 0 --cost-limit-fraction 0.2 \
    --set train.vector=sync --set train.num_envs=2 --set train.num_steps=32 \
    --set train.torch_threads=1 --set task.max_steps_eval=60 --set task.max_steps_train=60 \
    --no-progress "$@"
fi

OUT=${OUT_DIR:-runs/compare}
IL_ARGS=()
[[ -n "${IL:-}" ]] && IL_ARGS=(--il-checkpoint "$IL")
exec nice -n 5 "$PY" -m safevla_core.cli compare --out-dir "$OUT" --config config/compare_cpu.yaml \
  "${IL_ARGS[@]}" --rl-env-steps 100000 --eval-episodes 200 --seeds 3 --seed 0 \
  --cost-limit-fraction 0.2 --cost-limit-from il --eval-workers 2 "$@"
