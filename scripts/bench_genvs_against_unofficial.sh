#!/usr/bin/env bash
# GeNVS training throughput: holo3d against the public unofficial GeNVS code, on one GPU.
#
#   GENVS_UNOFFICIAL_DIR=/path/to/genvs_unofficial bash scripts/bench_genvs_against_unofficial.sh [OUT_DIR]
#
# GENVS_UNOFFICIAL_DIR is your checkout of https://github.com/jfozard/genvs_unofficial (never vendored
# into holo3d), with k_diffusion/models/ restored (its main branch omits it):
#   git -C "$GENVS_UNOFFICIAL_DIR" checkout cd94d86 -- k_diffusion/models
# Its imports need einops jsonmerge kornia scikit-image torchsde torchdiffeq clip-anytorch clean-fid
# resize-right segmentation-models-pytorch==0.3.3 (timm 0.9.2) importable (PYTHONPATH will do).
# Both sides time one optimizer step for BATCHES scenes per step (default 16, genvs_srn_cars.yaml's
# scenes_per_batch), 128 px:
#   holo3d  python -m holo3d.bench --model genvs --only train (configs/genvs_srn_cars.yaml, its precision)
#   public  python -m holo3d.bench.unofficial_genvs_step (config/config_high_noise.yaml, fp32 as its
#           configs set use_amp: False; 4 posed views per scene, its data loader's layout)
# then prints holo3d / public target views per second and both parameter counts. The public model is
# about 6x genvs_srn_cars.yaml's (189 M parameters against 31.7 M): MATCH_SIZE=1 (the default) widens
# holo3d's input network and denoiser to the public sizes (188 M) with --config-arg, so that the ratio
# compares models of the same size; MATCH_SIZE=0 times the config as it is.
# Env: PYTHON (default python), BATCHES (e.g. 2,16), WARMUP / REPEATS (default 3 / 20; the public step
# draws 1 or 2 input views at random, so its figure is a mean over REPEATS), HOLO3D_FLAGS / PUBLIC_FLAGS
# (more flags of either side, e.g. PUBLIC_FLAGS="--batch 8 --accumulation 2" to keep 16 scenes per step
# when 16 do not fit).
set -euo pipefail
: "${GENVS_UNOFFICIAL_DIR:?set GENVS_UNOFFICIAL_DIR to a checkout of https://github.com/jfozard/genvs_unofficial}"
if [ ! -f "$GENVS_UNOFFICIAL_DIR/genvs_model.py" ]; then
  echo "GENVS_UNOFFICIAL_DIR=$GENVS_UNOFFICIAL_DIR has no genvs_model.py: not a checkout of" \
       "jfozard/genvs_unofficial" >&2
  exit 2
fi
OUT=${1:-bench_vs_genvs_unofficial}
PY=${PYTHON:-python}
BATCHES=${BATCHES:-16}
WARMUP=${WARMUP:-3}
REPEATS=${REPEATS:-20}
G=model_factory_HoloModelFactory_args.model_GenvsModel_args
SIZE_FLAGS=()
if [ "${MATCH_SIZE:-1}" = 1 ]; then
  SIZE_FLAGS=(--config-arg "$G.encoder_args.decoder_channels=1472" --config-arg "$G.unet_args.model_channels=128"
              --config-arg "$G.unet_args.channel_mult=[1,1,2,4,4]" --config-arg "$G.unet_args.num_res_blocks=2"
              --config-arg "$G.unet_args.attention_resolutions=[16,8]")
fi
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
rm -f "$OUT/holo3d.jsonl" "$OUT/public.jsonl"

echo "holo3d: GeNVS training step, $BATCHES scenes per step -> $OUT/holo3d.jsonl" >&2
"$PY" -m holo3d.bench --model genvs --only train --scenes "$BATCHES" --warmup "$WARMUP" --repeats "$REPEATS" \
  --out "$OUT/holo3d.jsonl" ${SIZE_FLAGS[@]+"${SIZE_FLAGS[@]}"} ${HOLO3D_FLAGS:-} > /dev/null

echo "public ($GENVS_UNOFFICIAL_DIR): training step, same scenes per step, fp32 -> $OUT/public.jsonl" >&2
"$PY" -m holo3d.bench.unofficial_genvs_step --public-dir "$GENVS_UNOFFICIAL_DIR" --batch "$BATCHES" \
  --warmup "$WARMUP" --repeats "$REPEATS" --out "$OUT/public.jsonl" ${PUBLIC_FLAGS:-} > /dev/null

"$PY" -m holo3d.bench.unofficial_genvs_step --compare "$OUT/holo3d.jsonl" "$OUT/public.jsonl" | tee "$OUT/ratios.txt"
