#!/usr/bin/env bash
# Run the whole suite; pytest's exit code 5 (no tests collected) is a failure here, never a silent pass, and every
# skipped test is listed with its reason (-rs), so a skip is never silent either.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m pytest -q -rs -p no:cacheprovider --durations=15 "$@"
code=$?
if [ "$code" -eq 5 ]; then
    echo "no tests were collected: that is a failure" >&2
    exit 1
fi
exit "$code"
