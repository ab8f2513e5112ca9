#!/usr/bin/env bash
# The GPU checks in one go (what a session with a lent GPU runs; each step is time-boxed):
#   CUDA tests, the penalty benchmark (fp32, bf16), the whole-step benchmark (fp32 and bf16 at 32/64/128 with
#   CUDA graphs; bf16 64 with torch.compile) and the demo on the GPU.
#     benchmarks/gpu.sh [LOG]      (LOG defaults to gpu-checks.log; python3 must hold torch with CUDA)
# Packages this project needs and the GPU image may lack go in .whl/ (torch-fidelity for the demo's FID,
# ffmpeg-python + future).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-gpu-checks.log}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
step() { echo; echo "===== $1"; shift; local t0=$SECONDS; "$@"; echo "----- rc=$? in $((SECONDS - t0)) s"; }
{
  step "device" nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  step "torch" "$PY" -c "import torch, triton; print(torch.__version__, torch.version.cuda, triton.__version__)"
  step "cuda tests" timeout 150 "$PY" -m pytest -q -m cuda tests/unit/test_cuda.py -p no:cacheprovider
  step "gp bench fp32" timeout 60 "$PY" benchmarks/gp.py --device cuda --norm layer --rounds 15 --kernels
  step "gp bench bf16" timeout 40 "$PY" benchmarks/gp.py --device cuda --norm layer --rounds 15 --precision bf16
  for p in no bf16; do
    for r in 32 64 128; do
      for g in never always; do
        step "step $p $r, ours (train.cuda_graphs=$g) vs plain" timeout 50 "$PY" benchmarks/train_step.py \
          --device cuda --precision $p --resolution $r --set train.cuda_graphs=$g
      done
    done
  done
  step "step bf16 64 compile" timeout 150 "$PY" benchmarks/train_step.py --device cuda --precision bf16 \
    --resolution 64 --set train.compile=true train.cuda_graphs=never
  step "demo on the GPU (bf16, CUDA graphs by default)" timeout 150 "$PY" -m acl_dist demo launch.device=cuda \
    train.mixed_precision=bf16 train.progress=false run.out_dir=/tmp/acl_gpu_demo
} 2>&1 | tee "$LOG"
