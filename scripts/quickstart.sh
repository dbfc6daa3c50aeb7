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
# delta* at the largest trained budget (400k tokens), 2x it (a short extrapolation) and 10x it (flagged).
budgets="4e5 8e5 4e6"
# --law auto: spt, spt-regularized and spt-epochs are judged by their forecasts inside the pilot; the best is fitted.
step fit       $spt fit --law auto --data "$out/sweep" --starts 64 --seed 0 --out "$out/fit.json"
step delta     $spt optimal-fraction --fit "$out/fit.json" --tokens $budgets --domain-tokens 3200
step notebook  $spt notebook notebooks/choose_repetition_fraction.ipynb --out "$out/report" \
                   -p results_dir=$out/sweep -p "budgets=[4e5,8e5,4e6]" -p output_dir=$out/report \
                   -p starts=64 -p seed=0 -p law=auto

echo
echo "== quickstart summary (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${timings[@]}"
echo
echo "synthetic (rephrased general) tokens trained, from the sweep cells' mix plans:"
.venv/train/bin/python - "$out/sweep" "$out/mix/mixes" <<'PY'
import csv, json, sys
from pathlib import Path
sweep, mixes = Path(sys.argv[1]), Path(sys.argv[2])
total = 0
for run in csv.DictReader(open(sweep / "results.csv")):
    plan = json.loads((mixes / f"quickstart-{run['run_id']}" / "plan.json").read_text())
    synthetic = [s for s in plan["sources"] if s["role"] == "synthetic" and not s.get("left_out")]
    tokens = sum(s["realized_tokens"] for s in synthetic)
    unique = sum(s.get("unique_tokens", 0) for s in synthetic)
    total += tokens
    print(f"  {run['run_id']}: {tokens:,} of {plan['realized_tokens']:,} tokens ({unique:,} unique)")
print(f"  all runs: {total:,} tokens")
PY
echo
echo "what the pilot's curves show (the SPT law needs both):"
.venv/train/bin/python benchmarks/quickstart_curves.py "$out/sweep"
echo
echo "recommended δ (domain fraction) per budget:"
$spt optimal-fraction --fit "$out/fit.json" --tokens $budgets --domain-tokens 3200 --lines
echo
echo "outputs in $out:"
ls -1 "$out" "$out/report"
