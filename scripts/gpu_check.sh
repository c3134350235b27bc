#!/usr/bin/env bash
# The GPU check in one script, for a fresh machine with an NVIDIA GPU (about 8 minutes):
# setup (venv, models, test data), the CUDA tests, and the multi-camera benchmark on
# CUDA for 1, 4, 8 and 16 cameras. Writes gpu_check.log, cuda_tests.log, streams.json
# (the bench's JSON), streams.png and nvidia-smi.txt into the folder given (default
# out/gpu_check). DDS stays on the machine (scripts/local_dds.sh).
#
#   bash scripts/gpu_check.sh [OUT_DIR]
#   DEVICE=cpu STREAMS="1 2" bash scripts/gpu_check.sh /tmp/check   # the same steps on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=$(mkdir -p "${1:-out/gpu_check}" && cd "${1:-out/gpu_check}" && pwd)
DEVICE=${DEVICE:-cuda}
STREAMS=${STREAMS:-1 4 8 16}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1
step() { echo "== $(date -u +%H:%M:%S) $*"; }

if [[ $DEVICE == cuda* ]]; then
  nvidia-smi >"$OUT_DIR/nvidia-smi.txt" 2>&1 || {
    echo "gpu_check: nvidia-smi failed: no NVIDIA GPU or driver here (DEVICE=cpu runs the"
    echo "same steps on the CPU)"; exit 2; }
  head -15 "$OUT_DIR/nvidia-smi.txt"
fi

step "setup (venv, models, test data)"
bash scripts/setup_venv.sh
# shellcheck source=/dev/null
source .venv/bin/activate
fer-ros models fetch
fer-ros data fetch
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
if [[ $DEVICE == cuda* ]] && ! python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check: the venv's torch cannot use the GPU (a CPU-only build, from a local wheel"
  echo "cache?). Install the CUDA build of torch 2.13.0 into .venv (pip --index-url"
  echo "https://download.pytorch.org/whl/cuXYZ for the driver's CUDA) and run this again."
  exit 2
fi

step "CUDA tests"
# shellcheck source=/dev/null
source scripts/local_dds.sh
# A failing test does not stop the bench (GPU time is scarce); the script's exit code
# says it at the end. On a GPU no CUDA test may skip.
tests=0
python -m pytest -q -rs -p no:cacheprovider test/pipeline/test_cuda.py \
  >"$OUT_DIR/cuda_tests.log" 2>&1 || tests=$?
cat "$OUT_DIR/cuda_tests.log"
if [[ $DEVICE == cuda* ]] && grep -q "SKIPPED.*no CUDA" "$OUT_DIR/cuda_tests.log"; then
  tests=1
fi

step "bench --streams $STREAMS --device $DEVICE"
bench=0
# shellcheck disable=SC2086  # STREAMS is a list of numbers
(cd /tmp && fer-ros bench --streams $STREAMS --device "$DEVICE" --seconds "$SECONDS_PER_RUN" \
  --out "$OUT_DIR/bench") || bench=$?
cp "$OUT_DIR/bench/streams.json" "$OUT_DIR/bench/streams.png" "$OUT_DIR/" || bench=1
[[ -f $OUT_DIR/streams.json ]] && python - "$OUT_DIR/streams.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
runs = report["streams"] if isinstance(report["streams"], list) else [report["streams"]]
print(f"{report['machine'].get('gpu') or report['machine']['cpu']}, device {report['device']}")
for r in runs:
    print(f"  {r['n']:2d} streams: aggregate {r['aggregate_fps']:6.1f} fps, slowest stream "
          f"{r['min_stream_fps']:5.1f} fps, worst p95 {r['max_stream_p95_ms']:6.1f} ms")
EOF
step "done: $OUT_DIR (CUDA tests exit $tests, bench exit $bench)"
[[ $tests == 0 && $bench == 0 ]]
