#!/usr/bin/env bash
# The GPU checks for high resolution (issue 15) in one time-boxed run: the steps, their order and the files
# are in benchmarks/gpu_checks.py's docstring. About 5-7 minutes of work on one H100/H200, 400 s at most.
#
# 1. On the session's own machine, once: fetch the wheels the GPU image lacks (torch-fidelity, webdataset,
#    braceexpand, ffmpeg-python, future; pure Python, 0.7 MB) into the git-ignored .whl/:
#      benchmarks/gpu_wheels.sh      (PYTHON=.venv/bin/python benchmarks/gpu_wheels.sh where python3 has no pip)
#    (the image has torch, torchvision, accelerate, scikit-learn, scikit-image, pytest, matplotlib, tensorboard)
# 2. One device call: 1-2 min start + at most 7.5 min, so 15 min of device time leave 5 for one rerun:
#      run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=450)
#    A rerun of some steps (what they need comes along; no machine starts with under 4 minutes left):
#      run(command="GPU_CHECK_ONLY=train256 GPU_CHECK_BUDGET=170 bash benchmarks/gpu.sh", carry=[".whl"],
#          timeout_s=200)
#    then give_back() unless another call follows at once.
# 3. What comes back, flat in $OUT (7 files): summary.txt (a line per step: ok, failed, timed out or skipped,
#    seconds, then its key lines), gpu-checks.log (every step's whole output), train256-eval.csv and
#    train256-eval.png (FID per evaluation, six over the run: it should fall), train256-metrics.jsonl (losses,
#    images/s), train256-samples-first.png and train256-samples-last.png (8x8 grids, 256 px each). The reply's
#    output_tail ends with the summary too.
# Reading it: the gpu step names the card (H100 and H200 timings differ; say which gave each number). Each
# step* block has one line per side (plain, ours[train.channels_last=never] = NCHW, ours[...=always] = NHWC):
# ms/step, images/s, peak MiB, TFLOP/s and MFU; then "speed-up ours[...] vs plain: N.NNx" (goals: >= 2.5x at
# 128, >= 2x at 256, MFU >= 10 % at 256 with the largest batch, which "largest batch that fits" gives).
# memory: the peak MiB of a real bf16 step per resolution, plain vs checkpointing (OOM where it did not fit).
# train256: FID per evaluation, images/s, and "peak CUDA memory" of the whole run (the 80 GB question).
#
# The plumbing on a CPU, before any GPU time (16-32 px, a few steps, GPU-only steps skipped, about a minute):
#   GPU_CHECK_SMOKE=1 PYTHON=/path/to/venv/bin/python OUT=/tmp/gpu-smoke benchmarks/gpu.sh
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
