#!/usr/bin/env bash
# Pre-trains the small class-conditional voxel latent diffusion model that `make demo` samples from
# and exports it to holo3d/assets/demo_voxel_ldm (safetensors + config; loaded with holo3d.load).
#   1. the built-in demo preset (chair, table, mug) written as ShapeNet-style voxels, 100 objects per
#      category (80 train / 10 val / 10 test; the preset's own 12 are too few to learn a class from),
#   2. stage 1, the 32^3 occupancy autoencoder (configs/demo_pretrained_voxel_ae.yaml),
#   3. stage 2, the latent diffusion model on its frozen latents (configs/demo_pretrained_voxel_ldm.yaml),
#   4. python -m holo3d.export (EMA weights; the frozen autoencoder's weights are inside the export),
#      plus pretraining.json: the stages' wall-clock and CPU time, which the demo's label quotes.
# About 20 minutes on one CPU core (experiment.py uses CUDA when there is one):
#   bash scripts/pretrain_demo_model.sh          # DATA, WORK, OUT, SEQUENCES, PY override the defaults
# On a machine other jobs share, OMP_NUM_THREADS=1 avoids threads spinning against them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=$(realpath -m "${DATA:-data/builtin_voxels_pretrain}")
WORK=$(realpath -m "${WORK:-exp/demo_pretrained}")
OUT=${OUT:-holo3d/assets/demo_voxel_ldm}
SEQUENCES=${SEQUENCES:-100}
TIMES=$(mktemp -d)
trap 'rm -rf "$TIMES"' EXIT

timed() {  # timed NAME COMMAND...: runs COMMAND; writes its wall-clock and CPU seconds to $TIMES/NAME.json
  "$PY" - "$TIMES/$1.json" "${@:2}" <<'PY'
import json, resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[2:], check=True)
used = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"wall_seconds": round(time.perf_counter() - start),
           "cpu_seconds": round(used.ru_utime + used.ru_stime)}, open(sys.argv[1], "w"))
PY
}

if [ ! -f "$DATA/holo3d_synthetic.json" ]; then
  "$PY" -m holo3d.data.synthetic --preset demo --format voxels --sequences "$SEQUENCES" --out "$DATA" --no-progress
fi
timed autoencoder "$PY" experiment.py --config-name demo_pretrained_voxel_ae.yaml exp_dir="$WORK/voxel_ae" \
  data_source_VoxelDataSource_args.dataset_root="$DATA"
timed ldm "$PY" experiment.py --config-name demo_pretrained_voxel_ldm.yaml exp_dir="$WORK/voxel_ldm" \
  data_source_VoxelDataSource_args.dataset_root="$DATA" \
  model_factory_HoloModelFactory_args.model_VoxelLDM_args.autoencoder_exp_dir="$WORK/voxel_ae"
"$PY" -m holo3d.export exp_dir="$WORK/voxel_ldm" out="$OUT"

"$PY" - "$TIMES" "$OUT/pretraining.json" "$SEQUENCES" <<'PY'
import json, sys, torch
times, out, sequences = sys.argv[1], sys.argv[2], sys.argv[3]
stages = {name: json.load(open(f"{times}/{name}.json")) for name in ("autoencoder", "ldm")}
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
# on CPU the label quotes compute time (what a free core needs), not the wall clock of a shared machine
key = "cpu_seconds" if device == "cpu" else "wall_seconds"
info = {"what": "class-conditional voxel latent diffusion: configs/demo_pretrained_voxel_ae.yaml, "
                "then configs/demo_pretrained_voxel_ldm.yaml (scripts/pretrain_demo_model.sh)",
        "data": f"built-in demo preset as voxels, {sequences} objects per category",
        "device": device, "torch_threads": torch.get_num_threads(), "stages": stages,
        "train_minutes": round(sum(s[key] for s in stages.values()) / 60),
        "train_minutes_from": key}
with open(out, "w") as stream:
    stream.write(json.dumps(info, indent=2) + "\n")
PY
ls -l "$OUT"
