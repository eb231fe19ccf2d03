#!/usr/bin/env bash
# Create .venv and install heretic-tui into it (idempotent; fast when everything is already there).
# torch is installed only when missing, as the CPU build pinned below; a GPU user installs a CUDA build of torch
# into .venv first (see README), and this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
# tmux runs the end-to-end test in a real terminal; install it from the system packages when it is missing and this
# user may (root, or sudo without a password). Anywhere else the test is skipped and says why.
if ! command -v tmux >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null \
            || echo "setup: could not install tmux with apt-get; the tmux end-to-end test will be skipped" >&2
    elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux \
            >/dev/null || echo "setup: could not install tmux with apt-get; the tmux end-to-end test will be skipped" >&2
    else
        echo "setup: tmux is missing and cannot be installed here (needs apt-get as root or password-less sudo);" \
             "install it by hand, or the tmux end-to-end test is skipped" >&2
    fi
fi
# PostgreSQL runs the test of several workers on one study (a real server on 127.0.0.1, started by the test itself);
# install its server binaries the same way when they are missing. Elsewhere that test is skipped and says why.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
            || echo "setup: could not install postgresql with apt-get; the PostgreSQL workers test will be skipped" >&2
    elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql \
            >/dev/null || echo "setup: could not install postgresql with apt-get; the PostgreSQL workers test will be" \
                              "skipped" >&2
    else
        echo "setup: PostgreSQL is missing and cannot be installed here (needs apt-get as root or password-less" \
             "sudo); install it by hand, or the PostgreSQL workers test is skipped" >&2
    fi
fi
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
