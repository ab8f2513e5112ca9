#!/usr/bin/env bash
# The MNIST science grid (issue 23) and the R3GAN comparison (issue 24) on one lent GPU, in one device call:
# `python -m repro mnist`, `r3gan` and `r3gan_screen`, every run a child process on the one GPU, JOBS at once
# (small 32x32 nets leave an H100 mostly idle, so a grid trains in about the time of its slowest runs).
#
# 1. On the session's own machine, once: benchmarks/gpu_wheels.sh (the wheels the GPU image lacks, into .whl/).
# 2. One device call, with a timeout that leaves room for a rerun (runs finished before a cut are kept on a warm
#    machine and reused by the rerun):
#      run(command="bash benchmarks/gpu_mnist_grid.sh", carry=[".whl"], timeout_s=500)
#    STAGE=confirm with docs/results/mnist_selection.json present confirms the CPU's selection at the GPU budget
#    (fewer runs); STAGE=all (default) selects and confirms at the GPU budget; GRID_BUDGET_S caps the whole grid.
# 3. What comes back, flat in $OUT (at most 8 files): grid.log (both parts' whole output), mnist.md,
#    mnist_selection.json, mnist_fd_curves.png, mnist_training.png, r3gan.md, r3gan_mnist_curves.png,
#    r3gan_screen.md.
#
# The plumbing on a CPU (tiny nets, a few steps; about two minutes on two cores):
#   GRID_SMOKE=1 PYTHON=.venv/bin/python OUT=/tmp/grid-smoke benchmarks/gpu_mnist_grid.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/grid-out}
SCRATCH=${SCRATCH:-/tmp/grid-scratch}
STAGE=${STAGE:-all}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [[ "${GRID_SMOKE:-0}" == 0 ]]; then
  BUDGET=gpu DEVICE=cuda JOBS=${JOBS:-16} LIMIT=${GRID_BUDGET_S:-420}
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/acl_site \
      .whl/*.whl || { echo "gpu_mnist_grid.sh: installing the wheels in .whl/ failed"; exit 1; }
    export PYTHONPATH=$PYTHONPATH:/tmp/acl_site
  fi
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "gpu_mnist_grid.sh: no GPU"; exit 1; }
else
  BUDGET=tiny DEVICE=cpu JOBS=${JOBS:-2} LIMIT=${GRID_BUDGET_S:-600}
fi
mkdir -p "$OUT" "$SCRATCH/results"
if [[ "$STAGE" == confirm ]]; then
  cp docs/results/mnist_selection.json "$SCRATCH/results/" || { echo "no docs/results/mnist_selection.json"; exit 1; }
fi
started=$(date +%s)
status=0
for part in mnist r3gan r3gan_screen; do
  left=$(( LIMIT - ($(date +%s) - started) ))
  (( left > 20 )) || { echo "gpu_mnist_grid.sh: no time left for $part" | tee -a "$OUT/grid.log"; status=1; break; }
  stage=(); [[ $part == mnist ]] && stage=(--stage "$STAGE")
  echo "== $part, budget $BUDGET on $DEVICE, $JOBS runs at once, ${left} s left" | tee -a "$OUT/grid.log"
  timeout "$left" "$PY" -m repro "$part" --budget "$BUDGET" --device "$DEVICE" --jobs "$JOBS" "${stage[@]}" \
    --out "$SCRATCH/results" --runs "$SCRATCH/runs" --quiet >>"$OUT/grid.log" 2>&1 || status=$?
  grep -E "^$part: |error" "$OUT/grid.log" | tail -n 3
  (( status == 0 )) || break
done
for f in mnist.md mnist_selection.json mnist_fd_curves.png mnist_training.png r3gan.md r3gan_mnist_curves.png \
         r3gan_screen.md; do
  [[ -f "$SCRATCH/results/$f" ]] && cp "$SCRATCH/results/$f" "$OUT/"
done
[[ -f "$OUT/mnist.md" ]] && sed -n '/^## Verdicts/,/^What was compared/p' "$OUT/mnist.md"
echo "gpu_mnist_grid.sh: exit $status after $(( $(date +%s) - started )) s"
exit $status
