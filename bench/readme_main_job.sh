#!/usr/bin/env bash
# The README's main-job command in a fresh clone of the committed tree, without benchmark data (embedded default):
#   python bench/run_resources.py --repeat 1 --warmup 0 --out bench/results/readme_main_job_quiet.json \
#       --case readme-main-job -- bash bench/readme_main_job.sh
set -euo pipefail
dir=$(mktemp -d /tmp/readme-main.XXXX)
git clone -q "$(cd "$(dirname "$0")/.." && pwd)" "$dir/crystalgen"
cd "$dir/crystalgen"
unset CRYSTALGEN_DATA CRYSTALGEN_CDVAE_PROP_MODELS PYTHONPATH
export CRYSTALGEN_CACHE="$dir/cache"
cmd=$(grep -m1 '^python3 -m venv .venv .*crystalgen run symmcd$' README.md)
echo "README command: $cmd"
bash -c "$cmd"
ls runs/*/report.md
