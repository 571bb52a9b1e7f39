#!/usr/bin/env bash
# Time-to-99 % of the default cnn recipe on a CUDA GPU: prints the device, the torch version and the time.
#   bench/gpu.sh                  # the recipe as `mnistlab train` runs it on CUDA: fp32, channels_last, CUDA graphs
#   bench/gpu.sh --amp            # bf16 autocast;  --no-cuda-graphs: eager steps
#   bench/gpu.sh --compile        # torch.compile instead of the CUDA graph (its compile time counts)
#   bench/gpu.sh --batch-size 512 --lr 0.4 --seeds 5
#   bench/gpu.sh --committee 5    # the committee recipe: one member, 5 one after another, 5 at once (grouped)
#   PYTHONPATH=src python bench/committee_speed.py --device cuda --members 5   # step throughput, grouped vs not
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" bench/gpu.py "$@"
