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
step rephrase  $spt rephrase configs/rephrase/quickstart.yaml
step mix       $spt mix build configs/mix/quickstart.yaml
step plan      $spt sweep configs/sweeps/quickstart.yaml --dry-run
step sweep     $spt sweep configs/sweeps/quickstart.yaml
step fit       $spt fit --law spt --data "$out/sweep" --starts 64 --bootstrap 20 --seed 0 --out "$out/fit.json"
step delta     $spt optimal-fraction --fit "$out/fit.json" --tokens 1e6 1e7
step notebook  $spt notebook notebooks/choose_repetition_fraction.ipynb --out "$out/report" \
                   -p results_dir=$out/sweep -p "budgets=[1e6,1e7]" -p output_dir=$out/report \
                   -p starts=64 -p bootstrap=20 -p seed=0

echo
echo "== quickstart summary"
printf '%s\n' "${timings[@]}"
echo
echo "what the pilot's curves show (the SPT law needs both):"
.venv/train/bin/python benchmarks/quickstart_curves.py "$out/sweep"
echo
echo "recommended δ (domain fraction) per budget:"
$spt optimal-fraction --fit "$out/fit.json" --tokens 1e6 1e7 --lines
echo
echo "outputs in $out:"
ls -1 "$out" "$out/report"
