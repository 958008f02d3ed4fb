#!/usr/bin/env bash
# ViewFusion training throughput and generation time: holo3d against the public code, on one GPU.
#
#   VIEWFUSION_PUBLIC_DIR=/path/to/view-fusion bash scripts/bench_viewfusion_against_public.sh [OUT_DIR]
#
# VIEWFUSION_PUBLIC_DIR is your checkout of https://github.com/bronemos/view-fusion (never vendored into
# holo3d); its model files need numpy, tqdm and PyYAML importable. Both sides run the paper's small
# model (64 x [1, 2, 3, 5], 3 res blocks, attention at 16; NMR 64 px, max_views 6):
#   training    B targets per step (1 target + a random 1..6 of 6 conditioning views each), synthetic
#               batches of holo3d.bench.synthetic_batch:
#                 holo3d  python -m holo3d.bench --model viewfusion --only train (configs/viewfusion_nmr.yaml:
#                         its loop's step, bf16 autocast, EMA)
#                 public  python -m holo3d.bench.public_viewfusion_step (configs/small-v100-4.yaml: its
#                         experiment.py loop body, fp32)
#   generation  one target view from 6 conditioning views, 1000 denoising steps:
#                 holo3d  --only sample --sample-n 1 --sample-steps 1000 (the config's sampler, bf16)
#                 public  --generation (its generate() over its 1000-step test schedule, fp32)
# then prints holo3d / public speed-ups, both parameter counts, and the issue's targets (3x, 5x).
# Env: PYTHON (default python), BATCH (targets per step, comma list; default 32 = viewfusion_nmr.yaml's
# scenes_per_batch; the public small-v100 configs run 28 per GPU), WARMUP / REPEATS (default 3 / 10),
# SAMPLE_REPEATS (default 1), HOLO3D_FLAGS (more flags of holo3d's side), SMOKE=1 (a CPU smoke run of
# this script: both sides' tiny models at 16 px, 2 targets, 20 generation steps).
set -euo pipefail
: "${VIEWFUSION_PUBLIC_DIR:?set VIEWFUSION_PUBLIC_DIR to a checkout of https://github.com/bronemos/view-fusion}"
for f in model/view_fusion.py model/unet.py configs/small-v100-4.yaml; do
  if [ ! -f "$VIEWFUSION_PUBLIC_DIR/$f" ]; then
    echo "VIEWFUSION_PUBLIC_DIR=$VIEWFUSION_PUBLIC_DIR has no $f: not a checkout of bronemos/view-fusion" >&2
    exit 2
  fi
done
OUT=${1:-bench_viewfusion_vs_public}
PY=${PYTHON:-python}
BATCH=${BATCH:-32}
WARMUP=${WARMUP:-3}
REPEATS=${REPEATS:-10}
SAMPLE_REPEATS=${SAMPLE_REPEATS:-1}
STEPS=1000
HOLO_SIDE=()
PUBLIC_SIDE=()
GENERATION_STEPS=()
if [ "${SMOKE:-0}" = 1 ]; then
  BATCH=2 WARMUP=1 REPEATS=2 STEPS=20
  HOLO_SIDE=(--cpu)
  PUBLIC_SIDE=(--tiny --device cpu --threads 1)
  GENERATION_STEPS=(--generation-steps "$STEPS")
fi
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
rm -f "$OUT/holo3d.jsonl" "$OUT/public.jsonl"

echo "holo3d: training step, $BATCH targets -> $OUT/holo3d.jsonl" >&2
"$PY" -m holo3d.bench --model viewfusion --only train --scenes "$BATCH" --warmup "$WARMUP" \
  --repeats "$REPEATS" --out "$OUT/holo3d.jsonl" ${HOLO_SIDE[@]+"${HOLO_SIDE[@]}"} ${HOLO3D_FLAGS:-} > /dev/null
echo "holo3d: $STEPS-step generation of one view from 6 views -> $OUT/holo3d.jsonl" >&2
"$PY" -m holo3d.bench --model viewfusion --only sample --sample-n 1 --sample-steps "$STEPS" \
  --sample-repeats "$SAMPLE_REPEATS" --out "$OUT/holo3d.jsonl" ${HOLO_SIDE[@]+"${HOLO_SIDE[@]}"} \
  ${HOLO3D_FLAGS:-} > /dev/null

echo "public ($VIEWFUSION_PUBLIC_DIR): training step, same batches, fp32 -> $OUT/public.jsonl" >&2
"$PY" -m holo3d.bench.public_viewfusion_step --public-dir "$VIEWFUSION_PUBLIC_DIR" --batch "$BATCH" \
  --warmup "$WARMUP" --repeats "$REPEATS" --out "$OUT/public.jsonl" ${PUBLIC_SIDE[@]+"${PUBLIC_SIDE[@]}"} > /dev/null
echo "public: $STEPS-step generation of one view from 6 views -> $OUT/public.jsonl" >&2
"$PY" -m holo3d.bench.public_viewfusion_step --public-dir "$VIEWFUSION_PUBLIC_DIR" --generation \
  --sample-repeats "$SAMPLE_REPEATS" --out "$OUT/public.jsonl" ${PUBLIC_SIDE[@]+"${PUBLIC_SIDE[@]}"} \
  ${GENERATION_STEPS[@]+"${GENERATION_STEPS[@]}"} > /dev/null

"$PY" -m holo3d.bench.public_viewfusion_step --compare "$OUT/holo3d.jsonl" "$OUT/public.jsonl" | tee "$OUT/ratios.txt"
