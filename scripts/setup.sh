#!/usr/bin/env bash
# Create .venv and install heretic-tui into it (idempotent; fast when everything is already there).
# torch is installed only when missing, as the CPU build pinned below; a GPU user installs a CUDA build of torch
# into .venv first (see README), and this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" >/dev/null 2>&1; then
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet "torch==2.13.0"
fi
stamp=.venv/.heretic-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    python -m pip install --quiet -e ".[test]"
    touch "$stamp"
fi
