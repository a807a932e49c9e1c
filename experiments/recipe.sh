#!/usr/bin/env bash
# One table from one sweep: `bash experiments/recipe.sh NAME [multirun overrides...]`
# runs `python run.py -m seed=0,1,2 OVERRIDES` into experiments/runs/NAME (jobs share the classifier
# and CGMA caches), then writes experiments/results/NAME.md (mean ± std over the 3 seeds, with the
# command) and NAME.png. `make recipe NAME=... ARGS="..."` does the same with the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: experiments/recipe.sh NAME [overrides...]}
shift
python=${PYTHON:-python}
"$python" run.py -m "seed=${SEEDS:-0,1,2}" "$@" "hydra.sweep.dir=experiments/runs/$name"
"$python" -m cgmagan.aggregate "experiments/runs/$name" --name "$name" --out experiments/results
