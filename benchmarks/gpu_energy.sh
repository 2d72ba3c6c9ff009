#!/usr/bin/env bash
# Energy to target on a CUDA GPU, its energy read from the GPU's own counter (NVML, through
# Zeus): `siamcl bench energy --device cuda` over the multi-class methods, 3 seeds.
#
#     bash benchmarks/gpu_energy.sh OUT_DIR
#
# Run from the repository's root with a Python that has PyTorch with CUDA. Wheels found in
# .whl/ (`make gpu-wheels` downloads them where a package index is reachable, for a machine
# where none is) are installed into a scratch folder first. It writes OUT_DIR/gpu_check.txt
# (whether a ResourceMeter on the GPU reads NVML, on a few seconds of matrix products) and
# the benchmark's energy_mnist5k_multiclass.{json,md,png}. int8 QAT and the quantized
# student are left out: their int8 models run on the CPU. DEVICE=cpu and EXTRA="--quick
# --seeds 0" make a short check of the script on a machine without a GPU.
set -euo pipefail
out=${1:?usage: bash benchmarks/gpu_energy.sh OUT_DIR}
device=${DEVICE:-cuda}
python=${PYTHON:-python3}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/siamcl-site .whl/*.whl
    export PYTHONPATH=/tmp/siamcl-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

"$python" - "$device" <<'PY' | tee "$out/gpu_check.txt"
import sys
import time

import torch

from siamcl.accounting import ResourceMeter

device = torch.device(sys.argv[1])
size = 8192 if device.type == "cuda" else 256
x = torch.randn(size, size, device=device)
with ResourceMeter(device=device, flops="off") as meter:
    start = time.perf_counter()
    while time.perf_counter() - start < 3.0:  # long enough for the counter to move
        x = torch.tanh(x @ x)
report = meter.report()
name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
print(f"{name}: {report.energy_j:.1f} J by {report.energy_method} in {report.wall_s:.1f} s")
print(f"measured: {report.energy_measured}; note: {report.energy_note}")
PY

methods=standard,siamese,siamese-whitened,standard-bf16,siamese-bf16,siamese-whitened-bf16
methods+=,siamese-nn,standard-16px,siamese-16px,kd-student,small-alone
# shellcheck disable=SC2086  # EXTRA is a list of options
"$python" -m siamcl.cli bench energy --device "$device" --parts multiclass \
    --methods "$methods" --quiet --out "$out" ${EXTRA:-}
