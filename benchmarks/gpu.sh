#!/usr/bin/env bash
# The GPU checks for high resolution (issue 15) in one time-boxed run; the steps, their order and what comes
# back are in benchmarks/gpu_checks.py's docstring. Under 7 minutes of work on one H100/H200.
#
# 1. On the session's own machine, once: fetch the wheels the GPU image lacks (pure Python, 0.7 MB, into the
#    git-ignored .whl/; the image has torch, torchvision, accelerate, sklearn, skimage, pytest):
#      benchmarks/gpu_wheels.sh
# 2. One device call (1-2 min start + at most ~7.5 min; 15 min of device time then leave ~5 for one rerun):
#      run(command="benchmarks/gpu.sh", carry=[".whl"], timeout_s=450)
#    A rerun of some steps only (what they need comes along; no machine starts with under 4 minutes left):
#      run(command="GPU_CHECK_ONLY=train256 GPU_CHECK_BUDGET=170 benchmarks/gpu.sh", carry=[".whl"],
#          timeout_s=200)
# 3. What comes back, flat in $OUT (7 files): summary.txt (one line per step: ok / failed / timed out /
#    skipped, seconds, and its key lines: speed-ups, MFU, peak MiB, the largest batch, FIDs), gpu-checks.log
#    (everything), train256-eval.csv and train256-eval.png (FID per evaluation; it should fall),
#    train256-metrics.jsonl (losses, images/s), train256-samples-first.png and -last.png (8x8 grids).
#    The reply's output_tail ends with the summary too.
# Reading it: each step_* block prints one line per side (plain, ours[NCHW], ours[NHWC]) with ms/step,
# images/s, peak MiB and MFU, then "speed-up ours[...] vs plain: N.NNx" (goals: >= 2.5x at 128, >= 2x at 256,
# MFU >= 10 % at 256 with the largest batch); "memory" prints the peak of a real bf16 step per resolution,
# plain vs checkpointing ("OOM" where it does not fit). Note the card (gpu step): H100 and H200 differ.
#
# The plumbing on a CPU, before any GPU time (16-32 px, a few steps, GPU-only steps skipped):
#   GPU_CHECK_SMOKE=1 PYTHON=/path/to/venv/bin/python benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [[ "${GPU_CHECK_SMOKE:-0}" == 0 ]] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/acl_site \
    .whl/*.whl || { echo "gpu.sh: installing the wheels in .whl/ failed"; exit 1; }
  export PYTHONPATH=$PYTHONPATH:/tmp/acl_site
fi
exec "$PY" benchmarks/gpu_checks.py "$@"
