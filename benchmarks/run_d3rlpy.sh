#!/usr/bin/env bash
# Run the d3rlpy IQL / TD3+BC baseline in its own virtual environment.
# d3rlpy 2.8 pins gymnasium==1.0.0 (and mujoco<4), which conflicts with the main project,
# so it lives in benchmarks/.venv-d3rlpy. All arguments go to benchmarks/d3rlpy_baseline.py.
#   bash benchmarks/run_d3rlpy.sh --dataset hopper-medium-replay --algo iql --seed 0
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${D3RLPY_VENV:-$HERE/.venv-d3rlpy}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.installed" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first, pinned to the CPU wheel, so that d3rlpy does not pull a CUDA build.
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
    "$VENV/bin/python" -m pip install --quiet -r "$HERE/d3rlpy_requirements.txt"
    touch "$VENV/.installed"
fi
export MINARI_DATASETS_PATH="${MINARI_DATASETS_PATH:-/work/shared/datasets}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
exec "$VENV/bin/python" "$HERE/d3rlpy_baseline.py" "$@"
