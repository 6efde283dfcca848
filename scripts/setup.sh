#!/usr/bin/env bash
# The one setup command: system packages, the Python venv, the project, the ROS 2 messages, and
# (unless --no-run) the main job `safevla train` with the default config.
#
# Usage: scripts/setup.sh [--no-run] [-- <extra arguments for `safevla train`>]
# Environment: VENV (venv path, default <repo>/.venv), PYTHON (interpreter that creates the venv,
#   default python3), JOBS (parallel build jobs, default 2).
# Idempotent: system packages already present are not reinstalled (apt is skipped entirely when
# all are there), an existing venv is reused, pip skips satisfied pins and the message build is
# incremental. Works without standard input (CI=true): apt runs non-interactively, sudo never
# prompts (`sudo -n`), and is used only when not root.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(realpath -m "${VENV:-$REPO/.venv}")"
PYTHON="${PYTHON:-python3}"
RUN=1
TRAIN_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-run) RUN=0; shift ;;
    --) shift; TRAIN_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

log() { echo "setup.sh [$((SECONDS))s]: $*"; }
die() { echo "setup.sh: ERROR: $*" >&2; exit 1; }

# --- 1. System packages (Debian 12). Build tools for the rosidl message build; Python headers;
# EGL/OSMesa for MuJoCo's offscreen rendering (ENVIRONMENT.md, Simulation).
APT_PACKAGES=(cmake g++ make python3-dev python3-venv
              libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  log "system packages present: skipping apt"
elif ! command -v apt-get >/dev/null; then
  die "missing system packages (${missing[*]}) and no apt-get: install them by hand"
else
  SUDO=()
  if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install ${missing[*]}"
    SUDO=(sudo -n)
  fi
  log "apt-get install ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

# --- 2. The venv (required by the ROS 2 wheels' bootstrapper; ENVIRONMENT.md).
if [[ ! -x "$VENV/bin/python" ]]; then
  command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found"
  log "creating venv $VENV with $("$PYTHON" -V 2>&1)"
  "$PYTHON" -m venv "$VENV"
else
  log "reusing venv $VENV ($("$VENV/bin/python" -V 2>&1))"
fi
# A venv inside a colcon workspace must not be crawled for the package.xml files of its wheels.
touch "$VENV/COLCON_IGNORE"
"$VENV/bin/python" -m pip --version >/dev/null || die "$VENV has no pip (apt-get install python3-venv, then remove $VENV)"

# --- 3. Python dependencies (pinned) and the project itself (editable, no dependency resolution).
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
log "pip install -r requirements.txt"
"${PIP[@]}" install --progress-bar off -q -r "$REPO/requirements.txt"
# procthor ships the THOR asset database (object sizes) used to import ProcTHOR houses; only its
# JSON is read, so its own heavy dependencies (trimesh, python-sat, moviepy) are not installed.
log "pip install --no-deps procthor (asset database for ProcTHOR house import)"
"${PIP[@]}" install --progress-bar off -q --no-deps procthor==0.0.1.dev2
log "pip install -e . (editable, --no-deps)"
"${PIP[@]}" install --progress-bar off -q --no-deps --no-build-isolation -e "$REPO"

# --- 4. ROS 2 interfaces (rosidl, plain CMake) into the venv.
log "building ROS 2 messages"
VENV="$VENV" bash "$REPO/scripts/build_msgs.sh"

log "setup complete: venv $VENV"
if [[ $RUN -eq 0 ]]; then
  exit 0
fi

# --- 5. The main job.
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export HF_HUB_OFFLINE=1
# Network hygiene for anything that starts ROS 2 (ENVIRONMENT.md): loopback only, own domain.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(($$ % 101 + 1))}"
log "running: safevla train ${TRAIN_ARGS[*]:-}"
cd "$REPO"
exec "$VENV/bin/safevla" train "${TRAIN_ARGS[@]}"
