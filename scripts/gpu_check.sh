#!/usr/bin/env bash
# The GPU checks of latentrl for a GPU machine whose Python already has a CUDA build of torch
# (and numpy, safetensors, tqdm, matplotlib, imageio, pytest) but no network: the `gpu`-marked
# tests, the GPU benchmark, and the pendulum pipeline's wall time.
#
#   bash scripts/gpu_check.sh prepare          # with network: the missing wheels into .whl/
#   bash scripts/gpu_check.sh run STAGE OUT    # on the GPU machine, from the repository root
#
# `prepare` downloads gymnasium and mujoco (and what they need beyond the image's packages)
# for Python $PY_VERSION (default 3.12) into .whl/ (git-ignored), to carry to the machine.
# `run` installs them and latentrl (no network, no dependencies resolved) under /tmp, then
# runs STAGE, writing its log to OUT:
#   tests     pytest -m gpu                                   (limit 240 s)
#   bench     experiments/benchmarks/bench_gpu.py --pipeline skip: training samples/s of
#             every kind in float32 and bf16, latent MPC for 20 and 1,000 episodes (limit 420 s)
#   pipeline  latentrl run pendulum (the full preset) on the GPU, timed (limit 540 s)
#   quick     tests, then bench with 5 timed steps and the 20-episode MPC only (limit 420 s)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
wheels="$here/.whl"
# in one process: the machine's image need not have pytest-xdist, which the default addopts use
gpu_tests=(-o "addopts=--strict-markers" -m gpu -p no:cacheprovider -q -rs "$here/tests")

prepare() {
    local version=${PY_VERSION:-3.12}
    local python="$here/.venv/bin/python" gym="gymnasium>=1.0" mujoco="mujoco>=3.1"
    if [[ -x "$python" ]]; then  # the versions the project's environment tests with
        gym="gymnasium==$("$python" -c "import gymnasium; print(gymnasium.__version__)")"
        mujoco="mujoco==$("$python" -c "import mujoco; print(mujoco.__version__)")"
    else
        python=python3
    fi
    mkdir -p "$wheels"
    "$python" -m pip download --quiet --dest "$wheels" --only-binary=:all: \
        --python-version "$version" --platform manylinux_2_28_x86_64 \
        --platform manylinux2014_x86_64 "$gym" "$mujoco"
    # the machine's image has these already; carrying them would replace its own
    rm -f "$wheels"/numpy-*.whl "$wheels"/typing_extensions-*.whl "$wheels"/cloudpickle-*.whl
    du -sh "$wheels"
}

install() {
    local deps=/tmp/latentrl_deps package=/tmp/latentrl_package
    [[ -d "$wheels" ]] || { echo "no $wheels: run 'bash scripts/gpu_check.sh prepare' first" >&2; exit 2; }
    python3 -m pip install --quiet --no-deps --no-index --target "$deps" "$wheels"/*.whl
    python3 -m pip install --quiet --no-deps --no-build-isolation --target "$package" "$here"
    export PYTHONPATH="$package:$deps${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$package/bin:$PATH" MUJOCO_GL=egl PYTHONUNBUFFERED=1 WANDB_MODE=disabled
    python3 -c "import torch, latentrl.envs; print('torch', torch.__version__, 'on',
        torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
}

stage() {
    local name=$1 out=$2
    mkdir -p "$out"
    case "$name" in
        tests)
            timeout 240 python3 -m pytest "${gpu_tests[@]}" ;;
        bench)
            timeout 420 python3 "$here/experiments/benchmarks/bench_gpu.py" --pipeline skip ;;
        pipeline)
            local folder
            folder=$(mktemp -d)
            /usr/bin/time -f "pipeline wall time: %e s" timeout 540 python3 -m latentrl run pendulum \
                --runs-root "$folder/runs" --data-root "$folder/data" --wandb disabled
            cp "$folder"/runs/*/eval/results.json "$out/pipeline_results.json" ;;
        quick)
            timeout 180 python3 -m pytest "${gpu_tests[@]}"
            timeout 240 python3 "$here/experiments/benchmarks/bench_gpu.py" --pipeline skip \
                --steps 5 --episodes 20 --skip-planner ;;
        *)
            echo "unknown stage '$name': tests, bench, pipeline or quick" >&2; exit 2 ;;
    esac 2>&1 | tee "$out/$name.log"
}

case "${1:-}" in
    prepare) prepare ;;
    run)
        [[ $# -eq 3 ]] || { echo "usage: bash scripts/gpu_check.sh run STAGE OUT" >&2; exit 2; }
        install
        stage "$2" "$3" ;;
    *)
        echo "usage: bash scripts/gpu_check.sh prepare | run STAGE OUT" >&2; exit 2 ;;
esac
