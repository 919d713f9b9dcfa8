#!/usr/bin/env bash
# Issue 12's accelerator rows in one device call (planned for under 9 minutes on one H100/H200):
#   - kd (a frozen teacher that the replicas share), 1, 3 (a suite's seeds), 4 and 8 replicas,
#     the three CIFAR pairs;
#   - the replicas' convolutions grouped over them (XLA's vmap) against one per replica
#     (conv_impl='per_replica'; 4-5× faster on the CPU, unknown on GPUs);
#   - 8 steps per dispatch (a lax.scan over device-resident batches) against 1;
#   - atsc (a teacher that trains: one copy per replica), resnet56 → resnet20.
# Each row gives total and per-replica images/s, compile seconds and MFU; the closing note
# turns them into the GPU-hours of the full CIFAR-100 suite (runs × 12M images ÷ images/s).
#
# Prepare here, once (the GPU image has jax, flax, optax and orbax but not ml_collections or
# clu, and can fetch nothing):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl ml_collections==1.1.0 clu==0.0.12
# Then call the device tool's `run` with command `bash benchmarks/gpu_replicas.sh`,
# carry ['.whl'] and timeout_s 600. $OUT/RESULTS.md comes back: benchmarks/RESULTS.md with
# the new sections (copy them in), and $OUT/log the output.
# EXTRA holds flags added to every call (the last of a repeated flag wins). A trial on the
# CPU, small models:
#   EXTRA='--quick --pair cnn_large:cnn_small' OUT=/tmp/gpu_trial bash benchmarks/gpu_replicas.sh
set -euo pipefail
OUT=${OUT:-/tmp/gpu_replicas}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
if [ -d .whl ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONUNBUFFERED=1
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
EXTRA=${EXTRA:-}

step() {
  # shellcheck disable=SC2086  # EXTRA is flags, split on spaces.
  "$PYTHON" -m benchmarks.step --batch 64 --write-results --results-path "$OUT/RESULTS.md" \
    "$@" $EXTRA 2>&1 | tee -a "$OUT/log"
}

step --method kd --pair all --replicas 1,3,4,8 --results-tag replicas
step --method kd --pair resnet56:resnet20 --replicas 4,8 --conv-impl xla,per_replica \
  --results-tag replica_convs
step --method kd --pair resnet56:resnet20 --replicas 1,8 --steps-per-call 1,8 \
  --results-tag steps_per_call
step --method atsc --pair resnet56:resnet20 --replicas 1,4,8 --results-tag replicas_atsc
