#!/usr/bin/env bash
# Time-to-99 % of the default cnn recipe on a CUDA GPU: prints the device, the torch version and the time.
#   bench/gpu.sh                  # bf16 autocast + channels_last (the defaults here)
#   bench/gpu.sh --compile        # also torch.compile (its compile time counts)
#   bench/gpu.sh --batch-size 512 --lr 0.4 --seeds 5
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" bench/gpu.py "$@"
