#!/usr/bin/env bash
# One H200 call (device machine) for milestone 2's generative systems, side by side on one GPU,
# every model evaluated from its EMA weights (with warm-up):
#   genvs/      GeNVS on built-in SRN cars (holo3d.bench.genvs_run), then
#   distill/    SparseFusion-style distillation of that model on 5 held-out cars (holo3d.bench.distill_run)
#   viewfusion/ ViewFusion on built-in NMR-format objects (holo3d.bench.viewfusion_run)
#   voxel/      the class-conditional voxel LDM: data, AE, LDM, 1000 samples per category, 3D metrics
#               (holo3d.bench.voxel_ldm_run)
# The jobs share the GPU and its 16 CPU cores, so every speed figure here is a lower bound; timed
# benchmarks run alone. Every job ends by BUDGET seconds; everything lands in OUT/results.tar.gz.
# Usage: bash scripts/gpu_m2_systems.sh OUT [BUDGET_SECONDS]
set -uo pipefail
OUT=${1:?output folder}; BUDGET=${2:-540}
R=/tmp/m2; mkdir -p $R/genvs $R/distill $R/viewfusion $R/voxel
export PYTHONUNBUFFERED=1 HOLO3D_DATA_ROOT=/tmp/holo3d_data
T0=$(date +%s); left() { local s=$(( BUDGET - ($(date +%s) - T0) )); echo $(( s > 1 ? s : 1 )); }
minutes() { python3 -c "print(round(max(0.5, ($1) / 60), 2))"; }  # seconds -> --minutes

genvs_job() {
  local distill_s=$(( 5 * 25 + 70 ))  # 5 scenes x 25 s plus loading and evaluation
  timeout $(( BUDGET - distill_s )) python3 -m holo3d.bench.genvs_run --minutes $(minutes "$BUDGET - $distill_s - 10") \
    --out $R/genvs --save-exp /tmp/genvs_exp --objects 100 --max-memory-gib 40 > $R/genvs/log.txt 2>&1
  echo "genvs done at $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
  timeout $(( $(left) - 3 )) python3 -m holo3d.bench.distill_run --denoiser-exp /tmp/genvs_exp \
    --out $R/distill --scenes 5 --seconds-per-scene 25 > $R/distill/log.txt 2>&1
  echo "distill done at $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
}

viewfusion_job() {
  timeout $(( BUDGET - 5 )) python3 -m holo3d.bench.viewfusion_run --minutes $(minutes "$BUDGET - 15") \
    --sequences 60 --prediction v --out $R/viewfusion > $R/viewfusion/log.txt 2>&1
  echo "viewfusion done at $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
}

voxel_job() {
  timeout $(( BUDGET - 5 )) python3 -m holo3d.bench.voxel_ldm_run --minutes $(minutes "$BUDGET - 15") \
    --out $R/voxel --categories chair table mug --sequences 120 --work /tmp/voxel_work > $R/voxel/log.txt 2>&1
  echo "voxel done at $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
}

nvidia-smi --query-gpu=name,memory.total --format=csv > $R/gpu.txt
genvs_job & viewfusion_job & voxel_job &
wait
tar -C /tmp --exclude='*.pth' --exclude='*.npy' --exclude='*.safetensors' -czf $OUT/results.tar.gz m2
ls -la $OUT
