#!/usr/bin/env bash
# The SafeVLA comparison (paper Table 1) on Safety-ObjNav, end to end, on this machine:
# expert data -> behaviour cloning (IL) -> ppo, ppo_rs, ppo_lag, ppo_pid_lag fine-tuned from the
# same IL checkpoint with the same budget -> evaluation of all five on the same test episodes ->
# OUT_DIR/report/comparison.md + cost_distribution.png. Every stage resumes when rerun.
#
#   scripts/compare.sh                 # the stated budget below (hours on 2 cores)
#   TINY=1 scripts/compare.sh          # a 1-2 minute smoke run that proves the pipeline works
#
# Extra arguments go to `safevla compare` (e.g. --set train.num_envs=4).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1 LP_NUM_THREADS=1 MUJOCO_GL=${MUJOCO_GL:-egl} HF_HUB_OFFLINE=1

if [[ "${TINY:-0}" == "1" ]]; then
  OUT=${OUT_DIR:-runs/compare_tiny}
  exec "$PY" -m safevla_core.cli compare --out-dir "$OUT" --il-episodes 8 --il-epochs 2 \
    --rl-env-steps 64 --eval-episodes 4 --seed 0 \
    --set train.vector=sync --set train.num_steps=32 --set train.torch_threads=1 \
    --set task.max_steps_eval=100 --set task.max_steps_train=100 --no-progress "$@"
fi

OUT=${OUT_DIR:-runs/compare}
exec "$PY" -m safevla_core.cli compare --out-dir "$OUT" --config config/compare_cpu.yaml \
  --il-episodes 200 --il-epochs 15 --rl-env-steps 16384 --eval-episodes 40 --seed 0 \
  --cost-limit-fraction 0.2 "$@"
