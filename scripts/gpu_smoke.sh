#!/usr/bin/env bash
# GPU smoke test: the real-model study (config/real.yaml), reduced (codeift.gpu_smoke: two arms
# and the base per backbone, 60 bf16 SFT steps, 10 items per task), on one GPU in under 10 minutes
# (a target: no GPU has been lent to this project yet, so it has never run). bf16 SFT, vLLM on
# CUDA in bf16, scoring; then the study benchmark against the GPU's bf16 matmul rate prints SFT
# tokens/s, model FLOPs utilisation and vLLM tokens/s.
#
#   scripts/gpu_smoke.sh                 # results in results-gpu-smoke/, benchmark in its bench/
#   RESULTS=/scratch/smoke CORES=8 scripts/gpu_smoke.sh
#
# Needs a CUDA build of torch, the official vllm, and the packaged LMs (make setup). Refuses
# with exit code 2, before any job, where torch sees no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
RESULTS=${RESULTS:-results-gpu-smoke}
CORES=${CORES:-8}
CONFIG="$RESULTS/smoke.yaml"

"$PYTHON" -m codeift.gpu_smoke --configfile config/real.yaml --results "$RESULTS" --out "$CONFIG"
"$PYTHON" -c "import vllm" 2>/dev/null || {
    echo "gpu_smoke: vllm does not import: install the official vllm (CUDA)" >&2
    exit 2
}
started=$(date +%s)
# One GPU job at a time (SFT and generation each ask for gpu=1); engines share the GPU in turn.
"$PYTHON" scripts/bench_study.py --gpu --cores "$CORES" --configfile "$CONFIG" \
    --results "$RESULTS" --out "$RESULTS/bench" -- --resources gpu=1 engine_slots=1
echo "gpu_smoke: done in $(( $(date +%s) - started )) s on $("$PYTHON" -c \
    'import torch; print(torch.cuda.get_device_name(0))'); benchmark: $RESULTS/bench/bench_study.md"
