#!/usr/bin/env bash
# One H200 call (device machine) for HoloDiffusion's generation ablations (issue 17): several
# configs trained side by side on one GPU on the built-in chairs for TRAIN_SECONDS each (SIGTERM
# writes the stop checkpoint), then for each: generation quality against the held-out ground-truth
# shapes (holo3d.sample.generation_eval: COV / MMD / 1-NNA next to the ceiling and the collapse
# floor, appearance spread, contact sheet) and few-view reconstruction PSNR (visualize_reconstruction).
# Runs share the GPU and 16 CPU cores: their step times are lower bounds, not benchmarks.
# Usage: bash scripts/gpu_holo_ablations.sh OUT TRAIN_SECONDS NAME=CONFIG[:override,override...] ...
#   e.g. base=base x0=base:model_factory_HoloModelFactory_args.model_HoloDiffusionModel_args.x0_loss_weight=1.0
# Runs longer than one device command (10 minutes): the data and experiments live in /tmp, which a
# warm machine keeps between calls, and experiment.py resumes from its stop checkpoint. Call it again
# at once (the machine is released after about 30 s idle) with the same specs: TRAIN_ONLY=1 for every
# call but the last, which trains its share and then evaluates.
set -uo pipefail
OUT=${1:?output folder}; TRAIN_S=${2:?training seconds}; shift 2
R=/tmp/abl; mkdir -p $R
export PYTHONUNBUFFERED=1 HOLO3D_DATA_ROOT=/tmp/holo3d_data
T0=$(date +%s); now() { echo $(( $(date +%s) - T0 )); }
DATA=/tmp/holo3d_data/chairs
L=training_loop_HoloTrainingLoop_args
COMMON="data_root=$DATA category=chair scenes_per_step=8 num_workers=3 logger=none lr=2e-4 ema_decay=0.999"
COMMON="$COMMON optimizer_factory_HoloOptimizerFactory_args.warmup_iters=200 $L.ema_start_iteration=200"
COMMON="$COMMON $L.validation_interval_epochs=1 $L.sample_video_interval_epochs=0"
COMMON="$COMMON data_source_Holo3DDataSource_args.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args.dataset_length_train=100"
nvidia-smi --query-gpu=name,memory.total --format=csv > $R/gpu.txt
if [ ! -d $DATA ]; then  # a chained call finds the first call's data
  python3 -m holo3d.data.synthetic --format co3d --categories chair --sequences 120 --frames 24 --image-size 128 \
    --out $DATA --device cuda --no-progress > $R/data.log 2>&1 || { tail $R/data.log; rm -rf $DATA; exit 1; }
fi
echo "data done at $(now) s" >> $R/timeline.txt
names=()
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}; cfg=${rest%%:*}; extra=""
  [[ $rest == *:* ]] && extra=$(echo "${rest#*:}" | tr ',' ' ')
  names+=($name); mkdir -p $R/$name
  echo "$cfg $extra" > $R/$name/settings.txt
  timeout -s TERM -k 60 "$TRAIN_S" python3 experiment.py --config-name $cfg.yaml exp_dir=/tmp/exp_$name $COMMON $extra \
    >> $R/$name/train.log 2>&1 &
done
wait
echo "training done at $(now) s" >> $R/timeline.txt
if [ "${TRAIN_ONLY:-0}" = 1 ]; then
  for name in "${names[@]}"; do echo "== $name"; grep -E "train:|resumed|stopped" $R/$name/train.log | tail -3; done
  exit 0
fi
# one evaluation at a time: four reconstructions side by side ran out of GPU memory
for name in "${names[@]}"; do
  { python3 -m holo3d.sample.generation_eval exp_dir=/tmp/exp_$name num_samples=32 sampler=ddim steps=50 \
      out_dir=$R/$name/generation > $R/$name/generation.log 2>&1
    python3 visualize_reconstruction.py exp_dir=/tmp/exp_$name n_source_views=3 max_target_views=4 \
      > $R/$name/recon.log 2>&1
    cp /tmp/exp_$name/reconstructions/metrics.json $R/$name/recon_metrics.json 2>/dev/null
    grep -E "train:|val:|stopped" $R/$name/train.log | tail -4 > $R/$name/train_tail.txt; }
done
echo "evaluation done at $(now) s" >> $R/timeline.txt
tar -C /tmp -czf $OUT/results.tar.gz abl
ls -la $OUT
