#!/usr/bin/env bash
# The GPU check of issue 11 (batched trials, activation-space ablation): a few minutes on one CUDA GPU.
#
# 1. The exactness tests on CUDA: hooks against edited weights on every tiny architecture, a batch of K trials
#    against the K trials one by one, and the quantized path (tests/abliteration/test_activation_ablation.py,
#    test_batched_trials.py, test_quantized_ablation.py); the tiny models load on the GPU (model.device_map auto).
#    Where bitsandbytes is installed, bench/quantized_gpu_check.py searches a tiny Llama loaded in 4-bit and 8-bit.
# 2. The throughput table: one trial at a time against K = 1, 2, 4, 8 trials per forward pass on the benchmark toy
#    (bench/trial_throughput.py --device cuda); the target there is K=8 >= 5x one at a time. Heretic is left out:
#    its venv holds a CPU build of torch and the GPU machine cannot install another.
#
# The GPU machine reaches no network, so what its image lacks travels with the working tree:
#
#     bash bench/gpu_check.sh --prepare     # here, with network: wheels into .whl/, the toy and the demo
#                                           # model into .gpu-cache/ (about 12 MiB together)
#     bash bench/gpu_check.sh               # there, with .whl and .gpu-cache carried
#
# Environment: TRIALS (default 100: a study batches its guided trials only once TPE has seen enough of them, see
# core/abliteration/search_plan.py, so a shorter table shows little of K) and REPEATS (default 2) size the table;
# SKIP_TESTS=1 runs the table only.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(optuna==5.0.0 alembic==1.20.1 sqlalchemy==2.1.9 colorlog==6.12.0 mako==1.4.3 tomlkit==0.15.2
        platformdirs==4.14.9 pypdf==7.1.1)
TOY=qwen3-spread

if [[ "${1:-}" == "--prepare" ]]; then
    grep -qx '/.gpu-cache/' .git/info/exclude 2>/dev/null || echo '/.gpu-cache/' >> .git/info/exclude
    mkdir -p .whl .gpu-cache
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d .whl "${WHEELS[@]}"
    .venv/bin/python -c "import sys; sys.path.insert(0, 'bench'); from toy_models import TOYS_BY_NAME, prepare_toy; print(prepare_toy(TOYS_BY_NAME['$TOY']).folder)"
    rm -rf .gpu-cache/heretic-tui
    mkdir -p .gpu-cache/heretic-tui/bench-toys
    cache="$(.venv/bin/python -c "import platformdirs; print(platformdirs.user_cache_dir('heretic-tui'))")"
    cp -r "$cache/bench-toys/$TOY" .gpu-cache/heretic-tui/bench-toys/
    demo="$(.venv/bin/python -c "from heretic_tui.core.models.demo import ensure_demo_model; print(ensure_demo_model())")"
    cp -r "$demo" .gpu-cache/heretic-tui/
    du -sh .whl .gpu-cache
    echo "carry .whl and .gpu-cache; run: bash bench/gpu_check.sh"
    exit 0
fi

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [[ -d .whl ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null
[[ -d .gpu-cache ]] && export XDG_CACHE_HOME="$PWD/.gpu-cache"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"

status=0
if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
    # The tests keep their cache in .test-cache (tests/shared_cache.py): give them the demo model carried here.
    if [[ -d .gpu-cache/heretic-tui/demo-model-v2 && ! -d .test-cache/heretic-tui/demo-model-v2 ]]; then
        mkdir -p .test-cache/heretic-tui && cp -r .gpu-cache/heretic-tui/demo-model-v2 .test-cache/heretic-tui/
    fi
    python3 -m pytest -q -p no:cacheprovider tests/abliteration/test_activation_ablation.py \
        tests/abliteration/test_batched_trials.py tests/abliteration/test_quantized_ablation.py \
        tests/abliteration/test_quantized_export.py || status=$?
fi
if python3 -c "import bitsandbytes" 2>/dev/null; then
    python3 bench/quantized_gpu_check.py || status=$?
else
    echo "bitsandbytes is not installed here: the 4-bit and 8-bit checks (bench/quantized_gpu_check.py) are" \
         "skipped; its wheel is larger than what travels with the tree, so it runs where bitsandbytes is installed"
fi
python3 bench/trial_throughput.py --device cuda --no-heretic --toy "$TOY" --trials "${TRIALS:-100}" \
    --repeats "${REPEATS:-2}" ${OUT:+--output "$OUT/trial_throughput.json"} || status=$?
exit $status
