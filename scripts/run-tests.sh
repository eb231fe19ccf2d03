#!/usr/bin/env bash
# Run the whole suite; pytest's exit code 5 (no tests collected) is a failure here, never a silent pass, and every
# skipped test is listed with its reason (-rs), so a skip is never silent either.
#
# Two pytest workers (pytest-xdist), each test file on one worker (--dist loadfile, so a file's module fixtures are
# built once), each torch process on one thread: on CI's two cores that runs the suite in about half the time,
# where two processes that each spread over both cores would slow each other down many times over. Fixtures that
# build shared models (the demo model, the recorded runs) take a file lock, so the two workers build each once.
# HERETIC_TEST_WORKERS=0 runs everything in one process (for debugging).
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
workers="${HERETIC_TEST_WORKERS:-2}"
parallel=()
if [ "$workers" != "0" ]; then
    parallel=(-n "$workers" --dist loadfile)
fi
.venv/bin/python -m pytest -q -rs -p no:cacheprovider --durations=15 "${parallel[@]}" "$@"
code=$?
if [ "$code" -eq 5 ]; then
    echo "no tests were collected: that is a failure" >&2
    exit 1
fi
exit "$code"
