#!/usr/bin/env bash
# The Python packages acl_dist imports that the lent GPU machines' image lacks, as wheels in .whl/ (git-ignored;
# carried to the device with carry=[".whl"], installed there by benchmarks/gpu.sh). All pure Python, so one
# download serves the image's Python 3.12. Versions as in requirements.txt; their other needs (numpy, pillow,
# pyyaml, torch, torchvision, tqdm) are in the image.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d .whl \
  torch-fidelity==0.4.0 webdataset==1.0.2 braceexpand==0.1.7 ffmpeg-python==0.2.0 future==1.0.0
ls -l .whl
