#!/usr/bin/env bash
# Everything BENCHMARKS.md reports for a CUDA GPU, in one go (~5 min on an H200): the CUDA tests, then
# bench/gpu.sh for the default recipe beside the pytorch example, then one variant per flag (3 seeds each).
#   bench/gpu_all.sh [RESULTS_DIR]      # JSON per variant and a log land in RESULTS_DIR (default bench/results/gpu)
# Each step has its own time limit, so one that hangs or fails does not cost the others.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results/gpu}"
mkdir -p "$out"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHON="${PYTHON:-python3}"
log="$out/gpu.log"
step() {  # step SECONDS NAME ARGS...: bench/gpu.sh ARGS, results in $out/NAME.json
    local limit=$1 name=$2
    shift 2
    echo "== $name: bench/gpu.sh $*" | tee -a "$log"
    timeout "$limit" bash bench/gpu.sh "$@" --out "$out/$name.json" 2>&1 | tee -a "$log"
    echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$log"
}
{ nvidia-smi -L; "$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)'; } 2>&1 | tee "$log"
echo "== tests/test_cuda.py" | tee -a "$log"
timeout 240 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -n 30 | tee -a "$log"
step 150 default --seeds 5                                     # the recipe as mnistlab train runs it, and the example
step 60 eager --seeds 3 --no-example --no-cuda-graphs
step 60 amp --seeds 3 --no-example --amp
step 60 no-channels-last --seeds 3 --no-example --no-channels-last
step 60 batch256 --seeds 3 --no-example --batch-size 256 --lr 0.2   # chosen on validation (CPU), not test
step 240 compile --seeds 2 --no-example --compile
step 420 committee --committee 5                               # committee recipe: one member, 5 in turn, 5 at once
echo "== bench/committee_speed.py --device cuda" | tee -a "$log"
timeout 120 "$PYTHON" bench/committee_speed.py --device cuda --members 5 --out "$out/committee_speed.json" 2>&1 | tee -a "$log"
