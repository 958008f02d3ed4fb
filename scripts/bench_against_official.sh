#!/usr/bin/env bash
# HoloDiffusion training throughput and memory: holo3d against the official code, on one GPU.
#
#   OFFICIAL_DIR=/path/to/holo_diffusion bash scripts/bench_against_official.sh [OUT_DIR]
#
# OFFICIAL_DIR is your checkout of https://github.com/facebookresearch/holo_diffusion (never vendored
# into holo3d); its model module needs pytorch3d's Implicitron, visdom and matplotlib importable.
# Both sides time their training step on synthetic batches of 16 frames per scene at 800 px drawn
# by holo3d.bench.synthetic_batch, for 1 and 8 scenes, bootstrap off and on:
#   holo3d    python -m holo3d.bench --only train ... --precisions bf16 (8 scenes = one step)
#   official  python -m holo3d.bench.official_step (fp32, as its trainer runs; its model takes one
#             scene per forward, so 8 scenes = 8 steps)
# then prints holo3d / official scenes/s and the peak memory per scene of each.
# Env: PYTHON (default python), WARMUP / REPEATS (default 3 / 10), HOLO3D_FLAGS (more flags of holo3d's
# side, e.g. "--compile-step").
set -euo pipefail
: "${OFFICIAL_DIR:?set OFFICIAL_DIR to a checkout of https://github.com/facebookresearch/holo_diffusion}"
if [ ! -d "$OFFICIAL_DIR/holo_diffusion" ]; then
  echo "OFFICIAL_DIR=$OFFICIAL_DIR has no holo_diffusion/ folder: not a checkout of facebookresearch/holo_diffusion" >&2
  exit 2
fi
OUT=${1:-bench_vs_official}
PY=${PYTHON:-python}
WARMUP=${WARMUP:-3}
REPEATS=${REPEATS:-10}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
rm -f "$OUT/holo3d.jsonl" "$OUT/official.jsonl"

echo "holo3d: training step, 1 and 8 scenes, bootstrap off/on, bf16 -> $OUT/holo3d.jsonl" >&2
"$PY" -m holo3d.bench --only train --scenes 1,8 --bootstrap off,on --precisions bf16 \
  --warmup "$WARMUP" --repeats "$REPEATS" --out "$OUT/holo3d.jsonl" ${HOLO3D_FLAGS:-} > /dev/null

echo "official ($OFFICIAL_DIR): training step, same batches, fp32 -> $OUT/official.jsonl" >&2
"$PY" -m holo3d.bench.official_step --official-dir "$OFFICIAL_DIR" --scenes 1,8 --bootstrap off,on \
  --warmup "$WARMUP" --repeats "$REPEATS" --out "$OUT/official.jsonl" > /dev/null

"$PY" -m holo3d.bench.official_step --compare "$OUT/holo3d.jsonl" "$OUT/official.jsonl" | tee "$OUT/ratios.txt"
