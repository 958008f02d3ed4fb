"""`make demo`: the whole pipeline on the built-in dataset, on CPU, in a few minutes.

1. generates the built-in synthetic dataset (CO3Dv2 format; only the "mug" category the demo trains
   on, 20 objects: 16 to train on, 2 dev + 2 test held out) if it is missing,
2. trains the tiny ``demo`` config (the few-view reconstruction model: U-Net at t=0, no diffusion),
3. reconstructs held-out objects from a few source views (visualize_reconstruction.py: per-object
   videos GT | render | depth, 48-frame turntables, metrics.json),
4. writes EXP/demo_summary.png (rows = held-out objects; columns = source views | a held-out view |
   holo3d's render of it) and prints PSNR next to a trivial baseline.
Each step 1-3 is the command a user would type, so the demo exercises the documented entry points.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N_SOURCE_VIEWS = 3  # few-view: the sources lifted into each held-out object's grid
N_FRAMES = 48  # turntable frames of every video
CATEGORY = "mug"  # configs/demo_reconstruction.yaml's: solid shapes that a 16^3 grid trained for a minute can show


def run_step(title: str, command: list) -> None:
    print(f"\n== {title}\n$ {' '.join(map(str, command))}", flush=True)
    tic = time.perf_counter()
    subprocess.run([str(c) for c in command], cwd=REPO, check=True)
    print(f"-- {title}: done in {time.perf_counter() - tic:.0f} s", flush=True)


def _tile(images, size: int):
    """(N, 3, H, W) in [0, 1] -> list of PIL images of side ``size`` (nearest: keeps the pixels honest)."""
    from PIL import Image

    arrays = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    return [Image.fromarray(a).resize((size, size), Image.NEAREST) for a in arrays]


def summary_rows(exp_dir: Path, n_sources: int, max_objects: int = 3):
    """Per held-out object: (name, sources (K,3,H,W), gt (3,H,W), render (3,H,W), psnr, baseline psnr).

    Re-runs the reconstruction visualize_reconstruction.py ran (same function, same seed) because its
    outputs are videos; the baseline predicts every held-out view as the sources' mean colour.
    """
    import torch

    from holo3d.eval.image_metrics import psnr
    from holo3d.sample.dataset_access import collate_frames, sequence_frames
    from holo3d.sample.experiment_loader import load_experiment
    from holo3d.sample.reconstruct import heldout_sequences
    from holo3d.sample.script_config import ReconstructionConfig
    from holo3d.sample.sequence_reconstruction import reconstruct_sequence, split_views

    loaded = load_experiment(str(exp_dir), -1, True, "cpu")
    dataset, names = heldout_sequences(loaded.config, ReconstructionConfig(max_sequences=max_objects))
    rows = []
    for name in names:
        indices = sequence_frames(dataset, name)
        rec = reconstruct_sequence(loaded.model, dataset, indices, n_sources, 0, loaded.model.render_chunk_size,
                                   generator=torch.Generator().manual_seed(0))
        sources = collate_frames(dataset, [indices[i] for i in split_views(len(indices), n_sources)[0]])
        src_rgb = sources.image_rgb.float()  # (K, 3, H, W)
        mean_colour = src_rgb.mean(dim=(0, 2, 3)).view(1, 3, 1, 1).expand_as(rec.gt)
        rows.append((name, src_rgb, rec.gt[0], rec.rgb[0], psnr(rec.rgb, rec.gt).mean().item(),
                     psnr(mean_colour, rec.gt).mean().item()))
    return rows


def write_summary(rows, out_png: Path, size: int = 96) -> None:
    """The picture: a header, then one row per object: K sources | ground truth | holo3d."""
    import torch
    from PIL import Image, ImageDraw

    k = len(rows[0][1])
    pad, header = 4, 18
    width, height = (k + 2) * (size + pad) + pad, header + len(rows) * (size + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for label, column in ((f"{k} source views", 0), ("ground truth", k), ("holo3d", k + 1)):
        draw.text((pad + column * (size + pad), 3), label, fill="black")
    for r, (_, sources, gt, render, _, _) in enumerate(rows):
        tiles = _tile(torch.cat([sources, gt[None], render[None]]), size)
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (pad + c * (size + pad), header + pad + r * (size + pad)))
    tmp = out_png.with_name(out_png.name + ".tmp.png")
    sheet.save(tmp, optimize=True)
    os.replace(tmp, out_png)  # never a partial file under the final name


def report(exp_dir: Path, rows) -> None:
    metrics = json.loads((exp_dir / "reconstructions" / "metrics.json").read_text())
    print(f"\nfew-view reconstruction of held-out objects ({N_SOURCE_VIEWS} source views each): "
          f"sources | ground truth | holo3d  ->  {exp_dir / 'demo_summary.png'}")
    for name, _, _, _, ours, base in rows:
        print(f"  {name:<12} PSNR holo3d {ours:5.2f} dB   baseline (sources' mean colour) {base:5.2f} dB")
    print("  metrics.json mean: " + ", ".join(f"{k} {v:.3g}" for k, v in metrics["mean"].items()
                                                if isinstance(v, (int, float))))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data-dir", default="data/builtin_demo")
    parser.add_argument("--exp-dir", default="exp/demo")
    args = parser.parse_args(argv)
    data_dir, exp_dir = Path(args.data_dir).resolve(), Path(args.exp_dir).resolve()
    python, tic = sys.executable, time.perf_counter()
    if (data_dir / CATEGORY / "frame_annotations.jgz").is_file():
        print(f"== built-in dataset: already at {data_dir}")
    else:
        run_step("built-in dataset", [python, "-m", "holo3d.data.synthetic", "--preset", "demo",
                                      "--categories", CATEGORY, "--sequences", "20", "--out", data_dir])
    run_step("train (configs/demo_reconstruction.yaml)", [python, "experiment.py", "--config-name",
                                                          "demo_reconstruction.yaml",
                                           f"exp_dir={exp_dir}", f"data_source_Holo3DDataSource_args."
                                           f"dataset_map_provider_JsonIndexDatasetMapProviderV2_args."
                                           f"dataset_root={data_dir}"])
    run_step("few-view reconstruction of held-out objects", [
        python, "visualize_reconstruction.py", f"exp_dir={exp_dir}", "device=cpu", "max_sequences=3",
        f"n_source_views={N_SOURCE_VIEWS}", f"n_frames={N_FRAMES}", "video_size=[64,64]"])
    rows = summary_rows(exp_dir, N_SOURCE_VIEWS)
    write_summary(rows, exp_dir / "demo_summary.png")
    report(exp_dir, rows)
    print(f"\nholo3d demo finished in {time.perf_counter() - tic:.0f} s:")
    print(f"  dataset          {data_dir}")
    print(f"  experiment       {exp_dir}  (expconfig.yaml, train.log, checkpoints/)")
    print(f"  reconstructions  {exp_dir / 'reconstructions'}  (<object>_views.mp4: GT | render | depth, "
          f"<object>_turntable.mp4, metrics.json)")
    print("  samples          the generative model needs GPU training: python experiment.py --config-name "
          "base.yaml, then python generate_samples.py exp_dir=exp/base")
    print("  dashboard        make dashboard  (then re-run training with training_loop_HoloTrainingLoop_args.logger=visdom)")


if __name__ == "__main__":
    main()
