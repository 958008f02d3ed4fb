#!/usr/bin/env bash
# One GPU session (device machine): built-in "full" dataset, then the reconstruction baseline and
# the diffusion model trained side by side for TRAIN_SECONDS each, then reconstructions + samples.
# Usage: bash scripts/gpu_training_session.sh OUT_DIR [TRAIN_SECONDS]
set -uo pipefail
OUT=${1:?output folder}; SECONDS_EACH=${2:-240}
export PYTHONUNBUFFERED=1 HOLO3D_DATA_ROOT=/tmp/holo3d_data
L=training_loop_HoloTrainingLoop_args
COMMON="$L.logger=none $L.validation_interval_epochs=1 $L.checkpoint_interval_epochs=1"
COMMON="$COMMON data_source_Holo3DDataSource_args.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args.dataset_length_train=100"
COMMON="$COMMON optimizer_factory_HoloOptimizerFactory_args.lr=2e-4 optimizer_factory_HoloOptimizerFactory_args.warmup_iters=200"
python3 -m holo3d.data.synthetic --preset full --out /tmp/holo3d_data/builtin_full --device cuda \
  --no-progress 2>&1 | tail -3
for cfg in unet_with_no_diffusion base; do
  timeout -s TERM "$SECONDS_EACH" python3 experiment.py --config-name $cfg.yaml exp_dir=/tmp/exp_$cfg \
    $COMMON > "$OUT/train_$cfg.log" 2>&1 &
done
wait
for cfg in unet_with_no_diffusion base; do echo "== $cfg"; grep -E "train:|val:|stopped" "$OUT/train_$cfg.log" | sed 's/grid_abs_mean.*psnr=/... psnr=/' | tail -6; done
python3 visualize_reconstruction.py exp_dir=/tmp/exp_unet_with_no_diffusion n_source_views=3 2>&1 | tail -5
cp /tmp/exp_unet_with_no_diffusion/reconstructions/metrics.json "$OUT/recon_metrics.json" 2>/dev/null
python3 generate_samples.py exp_dir=/tmp/exp_base num_samples=8 sampler=ddim steps=50 n_frames=24 \
  render_size=[128,128] video_size=[128,128] 2>&1 | tail -3
cp /tmp/exp_base/generated_samples/contact_sheet.png "$OUT/contact_sheet_base.png" 2>/dev/null
