#!/usr/bin/env bash
# The quickstart: sample corpora -> tokenizer -> rephrase -> mix -> train sweep -> fit -> recommended δ.
# Every step skips work that is already done. Outputs go to outputs/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
spt=.venv/train/bin/spt
out=outputs/quickstart
mkdir -p "$out"
declare -a timings

step() {  # step NAME COMMAND...
    local name="$1"; shift
    local start=$SECONDS
    echo "== $name"
    "$@"
    timings+=("$(printf '%-12s %5d s' "$name" $((SECONDS - start)))")
}

step corpora   $spt corpora configs/corpora/quickstart.yaml
step tokenizer $spt tokenizer configs/tokenizer/quickstart.yaml
step model     $spt model check

echo
echo "== quickstart summary"
printf '%s\n' "${timings[@]}"
echo "outputs: $out"
ls -1 "$out"
echo
echo "Not built yet (open issues): rephrase (vLLM synthetic data), mix, train, sweep, fit -> recommended δ."
