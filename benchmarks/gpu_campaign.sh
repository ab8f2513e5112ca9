#!/usr/bin/env bash
# The converged campaign (repro/campaign.py, issue 33) on one lent GPU, in one device call: `python -m repro
# campaign --device cuda --jobs JOBS`, continuing from the committed records (docs/results/campaign/records.jsonl),
# every run a child process on the one GPU, JOBS at once, each started only when its predicted time fits in
# CAMPAIGN_MINUTES; the records of the runs it finished come back, to be committed like the CPU's.
#
# 1. On the session's own machine, once: benchmarks/gpu_wheels.sh (the wheels the GPU image lacks, into .whl/).
# 2. One device call, with a timeout that leaves room for the report (runs still going at the cut are lost; the
#    ones recorded are not):
#      run(command="CAMPAIGN_MINUTES=8 bash benchmarks/gpu_campaign.sh", carry=[".whl"], timeout_s=560)
# 3. What comes back in $OUT: records.jsonl (every record, the committed ones first), campaign.md,
#    campaign_budget.png, samples.tar (the new runs' final sample grids), campaign.log. Copy records.jsonl and
#    the grids over docs/results/campaign/ and rebuild the page: acl-dist repro campaign --time-budget 0.
#
# The plumbing on a CPU (tiny nets, a few steps):
#   CAMPAIGN_SMOKE=1 PYTHON=.venv/bin/python OUT=/tmp/campaign-smoke benchmarks/gpu_campaign.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/campaign-out}
SCRATCH=${SCRATCH:-/tmp/campaign-scratch}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [[ "${CAMPAIGN_SMOKE:-0}" == 0 ]]; then
  BUDGET=full DEVICE=cuda JOBS=${JOBS:-16} MINUTES=${CAMPAIGN_MINUTES:-8}
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/acl_site \
      .whl/*.whl || { echo "gpu_campaign.sh: installing the wheels in .whl/ failed"; exit 1; }
    export PYTHONPATH=$PYTHONPATH:/tmp/acl_site
  fi
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "gpu_campaign.sh: no GPU"; exit 1; }
  mkdir -p "$SCRATCH/results/campaign"
  cp docs/results/campaign/records.jsonl "$SCRATCH/results/campaign/" 2>/dev/null || true
else
  BUDGET=tiny DEVICE=cpu JOBS=${JOBS:-2} MINUTES=${CAMPAIGN_MINUTES:-0.5}
  mkdir -p "$SCRATCH/results/campaign"
fi
mkdir -p "$OUT"
before=$(cat "$SCRATCH/results/campaign/records.jsonl" 2>/dev/null | wc -l)
started=$(date +%s)
"$PY" -m repro campaign --budget "$BUDGET" --device "$DEVICE" --jobs "$JOBS" --time-budget "$MINUTES" \
  --out "$SCRATCH/results" --runs "$SCRATCH/runs" --quiet >"$OUT/campaign.log" 2>&1
status=$?
grep -E "^campaign" "$OUT/campaign.log" | tail -n 20
after=$(cat "$SCRATCH/results/campaign/records.jsonl" 2>/dev/null | wc -l)
for f in campaign/records.jsonl campaign.md campaign_budget.png; do
  [[ -f "$SCRATCH/results/$f" ]] && cp "$SCRATCH/results/$f" "$OUT/"
done
[[ -d "$SCRATCH/results/campaign/samples" ]] && tar -C "$SCRATCH/results/campaign" -cf "$OUT/samples.tar" samples
echo "gpu_campaign.sh: $(( after - before )) new records ($after in all), exit $status after $(( $(date +%s) - started )) s"
exit $status
