#!/usr/bin/env bash
# One H200 call (device machine): issue 19's step figures alone on the GPU, then the voxel latent
# diffusion run (issue 15) beside the per-system benchmark.
#   loader_srn.jsonl  SRN loader throughput with 0, 4, 8 workers, alone on the machine
#   holo_train.jsonl  HoloDiffusion training step at 1, 2, 4, 8 scenes (bf16, bootstrap off): one host
#                     sync per step against the sync-free step, and without the model's finite check
#                     (the step time extrapolated to zero scenes is the fixed cost)
#   systems.jsonl     python -m holo3d.bench --model {genvs,viewfusion,voxel_ldm,distill}
#   voxel/            python -m holo3d.bench.voxel_ldm_run (data, AE, LDM, samples, 3D metrics)
# Usage: bash scripts/gpu_m2_bench.sh OUT [BUDGET_SECONDS]
set -uo pipefail
OUT=${1:?output folder}; BUDGET=${2:-540}
R=/tmp/m3; mkdir -p $R/voxel
export PYTHONUNBUFFERED=1 HOLO3D_DATA_ROOT=/tmp/holo3d_data
T0=$(date +%s); now() { echo $(( $(date +%s) - T0 )); }
nvidia-smi --query-gpu=name,memory.total --format=csv > $R/gpu.txt
# the SRN loader on a quiet machine (the last call measured it while datasets were being generated)
python3 -m holo3d.data.synthetic --format srn --preset demo --categories car --sequences 12 --frames 24 \
  --image-size 128 --image-format png --out /tmp/srn_loader --device cuda --no-progress > $R/srn_data.log 2>&1
timeout 60 python3 -m holo3d.bench.loader_throughput --format srn --root /tmp/srn_loader --category cars \
  --workers 0,4,8 --scenes 24 --frames 2 --batches 20 > $R/loader_srn.jsonl 2> $R/loader.log
echo "loader done at $(now) s" >> $R/timeline.txt
timeout 110 python3 -m holo3d.bench --only train --scenes 1,2,4,8 --precisions bf16 --bootstrap off \
  --step-sync every,free --out $R/holo_train.jsonl > $R/holo_train.log 2>&1
timeout 50 python3 -m holo3d.bench --only train --scenes 1,8 --precisions bf16 --bootstrap off --step-sync free \
  --no-model-finite-check --out $R/holo_train.jsonl >> $R/holo_train.log 2>&1
echo "holo bench done at $(now) s" >> $R/timeline.txt
VOXEL_MIN=$(python3 -c "print(round(($BUDGET - $(now) - 15) / 60, 2))")
timeout $(( BUDGET - $(now) - 5 )) python3 -m holo3d.bench.voxel_ldm_run --minutes $VOXEL_MIN --out $R/voxel \
  --categories chair table mug --sequences 120 --work /tmp/voxel_work \
  > $R/voxel/log.txt 2>&1 &
for m in genvs viewfusion voxel_ldm distill; do
  timeout 70 python3 -m holo3d.bench --model $m --out $R/systems.jsonl >> $R/systems.log 2>&1
  echo "system bench $m done at $(now) s" >> $R/timeline.txt
done
wait
echo "voxel done at $(now) s" >> $R/timeline.txt
tar -C /tmp --exclude='*.pth' --exclude='*.npy' -czf $OUT/results.tar.gz m3
ls -la $OUT
