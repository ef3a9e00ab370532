#!/usr/bin/env bash
# Everything the GPU checks need, in one command on a machine with a CUDA GPU and torch,
# torchvision, scipy, pandas and pytest (no Ray, no install: the checkout is put on PYTHONPATH).
#
#   bash benchmarks/gpu_session.sh [OUT_DIR]      (default: $OUT, else ./gpu-session)
#
# Each step writes its own log in OUT_DIR and the script goes on when one fails, so that one run
# brings back everything: the GPU and versions, the CUDA test subset, the SSPA-JT step against a
# plain step, img/s per setup and trials per hour when trials share the GPU, and a bf16 profile.
set -uo pipefail
out=${1:-${OUT:-gpu-session}}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
step() {  # step NAME COMMAND...: run it, keep its output in OUT_DIR/NAME.log
    local name=$1; shift
    echo "== $name: $*"
    "$@" >"$out/$name.log" 2>&1
    local rc=$?
    tail -n 40 "$out/$name.log"
    echo "== $name: exit $rc"
    [ $rc -eq 0 ] || status=1
}
step gpu nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
step versions "$py" -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__)"
step test_cuda "$py" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py
step engine_step "$py" -m benchmarks.engine_step --skip-cpu
step profile_bf16 "$py" -m benchmarks.profile_pa --cuda-step --rows 25
step gpu_throughput "$py" -m benchmarks.gpu_throughput
exit $status
