#!/usr/bin/env bash
# Create or reuse ./.venv with latentrl (editable) and its development tools.
# Without an NVIDIA GPU, torch is pinned to the 2.13.0 CPU build, so no CUDA wheels are
# downloaded; with one, pip installs the registry's regular (CUDA) build.
# Re-running is cheap: nothing is installed while pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "bootstrap: latentrl needs Python >= 3.10; set PYTHON=/path/to/python3.x" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

stamp=.venv/.latentrl-bootstrap
wanted=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    exit 0
fi

pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "bootstrap: NVIDIA GPU found: installing the CUDA build of torch"
    "${pip[@]}" "torch>=2.4"
else
    echo "bootstrap: no GPU: installing the CPU build torch==2.13.0"
    "${pip[@]}" "torch==2.13.0"
fi
echo "bootstrap: installing latentrl (editable) with its development tools"
"${pip[@]}" -e ".[dev]"
echo "$wanted" >"$stamp"
echo "bootstrap: ready (.venv)"
