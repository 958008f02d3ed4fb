#!/usr/bin/env bash
# One H200 call (device machine) for milestone 2's systems, run side by side on one GPU:
#   genvs/      GeNVS on built-in SRN cars (holo3d.bench.genvs_run), then SparseFusion-style
#               distillation of that model on 5 held-out cars (holo3d.bench.distill_run)
#   viewfusion/ ViewFusion on built-in NMR-format objects (holo3d.bench.viewfusion_run)
#   holo_*/     HoloDiffusion ablations on built-in chairs (experiment.py + generation_eval)
#   loader/     SRN / NMR loader throughput with 0, 4, 8 workers
# The jobs share the GPU (and its 16 CPU cores), so every speed figure here is a lower bound;
# timed benchmarks run alone. Everything lands in OUT/results.tar.gz.
# Usage: bash scripts/gpu_m2_systems.sh OUT [SECONDS]
set -uo pipefail
OUT=${1:?output folder}; BUDGET=${2:-540}
R=/tmp/m2; mkdir -p $R/genvs $R/distill $R/viewfusion $R/loader
export PYTHONUNBUFFERED=1 HOLO3D_DATA_ROOT=/tmp/holo3d_data
T0=$(date +%s); left() { echo $(( BUDGET - ($(date +%s) - T0) )); }

genvs_job() {
  timeout 330 python3 -m holo3d.bench.genvs_run --minutes 5.2 --out $R/genvs --save-exp /tmp/genvs_exp \
    --objects 200 --max-memory-gib 40 > $R/genvs/log.txt 2>&1
  timeout $(( $(left) - 25 )) python3 -m holo3d.bench.distill_run --denoiser-exp /tmp/genvs_exp \
    --out $R/distill --scenes 5 --seconds-per-scene 25 > $R/distill/log.txt 2>&1
}

viewfusion_job() {
  timeout $(( BUDGET - 30 )) python3 -m holo3d.bench.viewfusion_run --minutes $(( (BUDGET - 45) / 60 )) \
    --sequences 100 --prediction v --out $R/viewfusion > $R/viewfusion/log.txt 2>&1
}

holo_job() {  # NAME CONFIG [overrides...]
  local name=$1 cfg=$2; shift 2; mkdir -p $R/$name
  local L=training_loop_HoloTrainingLoop_args P=data_source_Holo3DDataSource_args.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args
  timeout 300 python3 experiment.py --config-name $cfg exp_dir=/tmp/exp_$name data_root=/tmp/chairs_co3d \
    scenes_per_step=8 lr=2e-4 $L.logger=none $L.validation_interval_epochs=1 $L.checkpoint_interval_epochs=1 \
    $L.sample_video_interval_epochs=0 $L.ema_start_iteration=200 $P.dataset_length_train=100 \
    optimizer_factory_HoloOptimizerFactory_args.warmup_iters=200 "$@" > $R/$name/train.log 2>&1
  timeout $(( $(left) - 25 )) python3 -m holo3d.sample.generation_eval exp_dir=/tmp/exp_$name num_samples=16 \
    out_dir=$R/$name/generation > $R/$name/generation.log 2>&1
}

loader_job() {
  sleep 150  # the SRN / NMR data exist by then (written by the GeNVS and ViewFusion jobs)
  for fmt in srn nmr; do
    root=$([ $fmt = srn ] && echo $HOLO3D_DATA_ROOT/genvs_car_srn_128 || ls -d $HOLO3D_DATA_ROOT/*nmr*_s100 | head -1)
    scenes=$([ $fmt = srn ] && echo 16 || echo 32); frames=$([ $fmt = srn ] && echo 2 || echo 7)
    timeout 120 python3 -m holo3d.bench.loader_throughput --format $fmt --root "$root" --workers 0,4,8 \
      --scenes $scenes --frames $frames --batches 30 --category cars >> $R/loader/loader.jsonl 2>> $R/loader/log.txt
  done
}

nvidia-smi --query-gpu=name,memory.total --format=csv > $R/gpu.txt
genvs_job & viewfusion_job & loader_job &
python3 -m holo3d.data.synthetic --preset full --categories chair --out /tmp/chairs_co3d --device cuda \
  --no-progress > $R/chairs_data.log 2>&1
holo_job holo_official holo_official.yaml &
holo_job holo_base_x0loss base.yaml model_factory_HoloModelFactory_args.model_HoloDiffusionModel_args.x0_loss_weight=1.0 &
wait
nvidia-smi > $R/nvidia_smi_end.txt 2>&1
tar -C /tmp -czf $OUT/results.tar.gz m2 --exclude='*.pth'
ls -la $OUT
