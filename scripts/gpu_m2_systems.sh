#!/usr/bin/env bash
# One H200 call (device machine) for milestone 2's image systems, side by side on one GPU:
#   genvs/      GeNVS on built-in SRN cars (holo3d.bench.genvs_run), then
#   distill/    SparseFusion-style distillation of that model on 5 held-out cars (holo3d.bench.distill_run)
#   viewfusion/ ViewFusion on built-in NMR-format objects (holo3d.bench.viewfusion_run)
#   loader/     SRN loader throughput with 0, 4, 8 workers (on its own small SRN folder)
# The jobs share the GPU and its 16 CPU cores, so every speed figure here is a lower bound; timed
# benchmarks run alone. Every job ends by BUDGET seconds; everything lands in OUT/results.tar.gz.
# Usage: bash scripts/gpu_m2_systems.sh OUT [BUDGET_SECONDS]
set -uo pipefail
OUT=${1:?output folder}; BUDGET=${2:-530}
R=/tmp/m2; mkdir -p $R/genvs $R/distill $R/viewfusion $R/loader
export PYTHONUNBUFFERED=1 HOLO3D_DATA_ROOT=/tmp/holo3d_data
T0=$(date +%s); left() { echo $(( BUDGET - ($(date +%s) - T0) )); }

genvs_job() {
  timeout 420 python3 -m holo3d.bench.genvs_run --minutes 6.3 --out $R/genvs --save-exp /tmp/genvs_exp \
    --objects 100 --max-memory-gib 60 > $R/genvs/log.txt 2>&1
  echo "genvs done at $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
  timeout $(( $(left) - 5 )) python3 -m holo3d.bench.distill_run --denoiser-exp /tmp/genvs_exp \
    --out $R/distill --scenes 5 --seconds-per-scene 15 > $R/distill/log.txt 2>&1
  echo "distill done at $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
}

viewfusion_job() {
  timeout $(( BUDGET - 5 )) python3 -m holo3d.bench.viewfusion_run --minutes 7 --sequences 60 --prediction v \
    --out $R/viewfusion > $R/viewfusion/log.txt 2>&1
  echo "viewfusion done at $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
}

loader_job() {
  python3 -m holo3d.data.synthetic --format srn --preset demo --categories car --sequences 30 --frames 24 \
    --image-size 128 --image-format png --out /tmp/srn_loader --device cuda --no-progress > $R/loader/data.log 2>&1
  timeout 150 python3 -m holo3d.bench.loader_throughput --format srn --root /tmp/srn_loader --category cars \
    --workers 0,4,8 --scenes 24 --frames 2 --batches 30 > $R/loader/srn.jsonl 2> $R/loader/log.txt
  echo "loader done at $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
}

nvidia-smi --query-gpu=name,memory.total --format=csv > $R/gpu.txt
genvs_job & viewfusion_job & loader_job &
wait
tar -C /tmp --exclude='*.pth' -czf $OUT/results.tar.gz m2
ls -la $OUT
