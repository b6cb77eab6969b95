#!/usr/bin/env bash
# The CPU evidence, most informative first (resumable: rerun the same command after an interruption; stored runs
# are skipped). Extra arguments go to every study.run call, e.g. --db PATH.
#   1. feature extraction, every dataset, k and seed (minutes)
#   2. the resolution check: small images' extraction at 64 and 224 px (python -m study.resolution); the convergence
#      check's seed 0: four learning rates, and twice the budget (python -m study.convergence)
#   3. fine-tuning seed 0: every dataset at k = 5, 20, 100, then 10, 50, max; ft_partial
#   4. fine-tuning seeds 1-2 (the grid's, which the convergence check's seeds 1-2 are compared with), then the
#      convergence check's seeds 1-2 at twice the budget
set -euo pipefail
cd "$(dirname "$0")/.."
run() { python -m study.run --threads 2 --no-progress "$@"; }
run --grid cpu --methods fe_linear,fe_fne "$@"
run --grid cpu-resolution "$@"
run --grid cpu-convergence --seeds 0 "$@"
run --grid cpu --seeds 0 "$@"
run --grid cpu "$@"
run --grid cpu-convergence "$@"
