#!/usr/bin/env bash
# Generate the safevla_ros ROS 2 interfaces (msg/*.msg, srv/*.srv) and install them into the venv.
#
# Plain CMake against the ROS 2 PyPI wheels installed in the venv (no colcon, nothing sourced):
# configures CMakeLists.txt with SAFEVLA_INSTALL_PYTHON=OFF (pip installs the Python sources),
# builds in build/msgs[-<venv hash>] and installs the generated safevla_ros.msg / safevla_ros.srv
# modules and their typesupport libraries into $VENV (ENVIRONMENT.md, ROS 2 section).
# Idempotent: a second run reconfigures, finds nothing to rebuild and reinstalls in a few seconds.
#
# Usage: scripts/build_msgs.sh            (VENV defaults to <repo>/.venv)
#        VENV=/tmp/venv scripts/build_msgs.sh
# Environment: VENV (venv path), BUILD_DIR (CMake build dir), JOBS (parallel jobs, default 2).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
VENV="$(cd "$VENV" 2>/dev/null && pwd)" || { echo "build_msgs: no venv at ${VENV}" >&2; exit 1; }
PY="$VENV/bin/python"
JOBS="${JOBS:-2}"
if [[ -z "${BUILD_DIR:-}" ]]; then
  if [[ "$VENV" == "$REPO/.venv" ]]; then
    BUILD_DIR="$REPO/build/msgs"
  else
    # One build tree per venv: the CMake cache remembers its interpreter and install prefix.
    BUILD_DIR="$REPO/build/msgs-$(printf '%s' "$VENV" | sha1sum | cut -c1-8)"
  fi
fi

log() { echo "build_msgs: $*"; }
die() { echo "build_msgs: ERROR: $*" >&2; exit 1; }

[[ -x "$PY" ]] || die "$PY not found; create the venv first (scripts/setup.sh)"
for tool in cmake make c++; do
  command -v "$tool" >/dev/null || die "'$tool' not found; apt-get install cmake g++ make python3-dev"
done
for pkg in ament_cmake ament_cmake_python rosidl_default_generators std_msgs geometry_msgs; do
  [[ -d "$VENV/share/$pkg/cmake" ]] \
    || die "$VENV/share/$pkg missing: pip install -r $REPO/requirements.txt into $VENV first"
done

# Run a step quietly; on failure show the end of its log.
run_logged() {
  local name="$1"; shift
  local logfile="$BUILD_DIR/$name.log"
  if ! "$@" >"$logfile" 2>&1; then
    tail -n 60 "$logfile" >&2
    die "$name failed (full log: $logfile)"
  fi
}

# A build tree configured for another checkout, venv or interpreter is stale: start afresh.
fingerprint="$REPO|$VENV|$("$PY" -c 'import sys; print(sys.version.split()[0])')"
if [[ -f "$BUILD_DIR/CMakeCache.txt" && "$(cat "$BUILD_DIR/.safevla-fingerprint" 2>/dev/null)" != "$fingerprint" ]]; then
  log "discarding stale build tree $BUILD_DIR"
  rm -rf "$BUILD_DIR"
fi
mkdir -p "$BUILD_DIR"
printf '%s' "$fingerprint" >"$BUILD_DIR/.safevla-fingerprint"
export PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV"
export CMAKE_PREFIX_PATH="$VENV"

start=$SECONDS
log "configure ($BUILD_DIR)"
run_logged configure cmake -S "$REPO" -B "$BUILD_DIR" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" \
  -DPython3_FIND_VIRTUALENV=ONLY \
  -DBUILD_TESTING=OFF \
  -DSAFEVLA_INSTALL_PYTHON=OFF \
  -DCMAKE_PROJECT_INCLUDE="$REPO/cmake/fix_wheel_python_includes.cmake"
log "build (-j$JOBS)"
run_logged build cmake --build "$BUILD_DIR" --parallel "$JOBS"
log "install into $VENV"
run_logged install cmake --install "$BUILD_DIR"

# Check from outside the repository that the generated modules import from the venv alone.
(cd / && "$PY" -c "from safevla_ros.msg import DiscreteAction, SafetyCost, TrainingStatus, \
WorldStateStamped; from safevla_ros.srv import ResetEpisode") \
  || die "generated interfaces installed but do not import"
log "done in $((SECONDS - start)) s: safevla_ros.msg and safevla_ros.srv import"
