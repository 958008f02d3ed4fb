"""`make demo`: the whole pipeline on the built-in dataset, on CPU, in a few minutes.

1. generates the built-in synthetic dataset (CO3Dv2 format; only the "mug" category the demo trains
   on, 20 objects: 16 to train on, 2 dev + 2 test held out) if it is missing,
2. trains the tiny ``demo`` config (the few-view reconstruction model: U-Net at t=0, no diffusion),
3. reconstructs held-out objects from a few source views (visualize_reconstruction.py: per-object
   videos GT | render | depth, 48-frame turntables, metrics.json),
4. writes EXP/demo_summary.png (rows = held-out objects; columns = source views | a held-out view |
   holo3d's render of it) and prints PSNR next to a trivial baseline,
5. loads the small class-conditional voxel latent diffusion model shipped in holo3d/assets/ (pre-trained
   by scripts/pretrain_demo_model.sh on the built-in data, not trained here) with ``holo3d.load``,
   draws samples of every category (fixed seed), writes each as a 48-frame turntable video
   (EXP/pretrained_samples/) and adds them, labelled as pre-trained, to the summary picture.
Each step 1-3 is the command a user would type, so the demo exercises the documented entry points;
step 5 is the Python API (holo3d.load, model.sample) and generate_samples.py's renderer.
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
# The demo's training, shortened to leave time for the samples: one epoch fewer than
# demo_reconstruction.yaml's 8, validated and checkpointed once at the end instead of every epoch.
TRAIN_EPOCHS = 7
TRAIN_OVERRIDES = tuple(f"training_loop_HoloTrainingLoop_args.{key}={value}" for key, value in (
    ("max_epochs", TRAIN_EPOCHS), ("validation_interval_epochs", TRAIN_EPOCHS), ("checkpoint_interval_epochs", 0)))
N_REPORT_VIEWS = 6  # held-out views per object behind the printed PSNRs (metrics.json has all of them)
CATEGORY = "mug"  # configs/demo_reconstruction.yaml's: solid shapes that a 16^3 grid trained for a minute can show
PRETRAINED = Path(__file__).resolve().parent / "assets" / "demo_voxel_ldm"  # ships in the wheel
SAMPLES_PER_CLASS = 2
SAMPLE_VIEWS = (0, 16)  # turntable frames of each sample shown in the picture (0 and 120 degrees)
SAMPLE_SIZE = 40  # pixels of the sample videos (shown at twice that): rendering them is most of their time
SAMPLE_CHUNK = 8192  # rays per renderer pass: less memory than the model's default, and no slower on CPU
# turntable radius: closer than holo3d.render_turntable's default (1.5 x the grid's side) because the
# built-in objects fill only the middle of the grid (they fit in a sphere of radius 0.45 x the side)
SAMPLE_CAMERA_DISTANCE = 1.1
# classifier-free guidance; 25 DDIM steps give the shipped model's samples the occupied fractions and
# nearest-category agreement of 50
SAMPLE_SETTINGS = {"sampler": "ddim", "steps": 25, "guidance_scale": 2.0}
SEED = 0


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


def summary_rows(exp_dir: Path, n_sources: int, max_objects: int = 3, n_views: int = N_REPORT_VIEWS):
    """Per held-out object: (name, sources (K,3,H,W), gt (3,H,W), render (3,H,W), psnr, baseline psnr).

    Re-runs the reconstruction visualize_reconstruction.py ran (same function, same seed) because its
    outputs are videos, rendering only ``n_views`` of the held-out views, evenly spread (the first is
    the one shown); both PSNRs are over those views. The baseline predicts every view as the
    sources' mean colour.
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
        rec = reconstruct_sequence(loaded.model, dataset, indices, n_sources, n_views,
                                   loaded.model.render_chunk_size, generator=torch.Generator().manual_seed(0))
        sources = collate_frames(dataset, [indices[i] for i in split_views(len(indices), n_sources)[0]])
        src_rgb = sources.image_rgb.float()  # (K, 3, H, W)
        mean_colour = src_rgb.mean(dim=(0, 2, 3)).view(1, 3, 1, 1).expand_as(rec.gt)
        rows.append((name, src_rgb, rec.gt[0], rec.rgb[0], psnr(rec.rgb, rec.gt).mean().item(),
                     psnr(mean_colour, rec.gt).mean().item()))
    return rows


def _text_lines(text: str, width_px: int):
    """``text`` wrapped to lines that fit ``width_px`` in PIL's default font (6 px a character)."""
    import textwrap

    return textwrap.wrap(text, max(20, width_px // 6))


def _reconstruction_sheet(rows, size: int, pad: int = 4, header: int = 18):
    """A header, then one row per object: K sources | ground truth | holo3d."""
    import torch
    from PIL import Image, ImageDraw

    k = len(rows[0][1])
    width, height = (k + 2) * (size + pad) + pad, header + len(rows) * (size + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for label, column in ((f"{k} source views of a held-out object", 0), ("ground truth", k),
                          ("holo3d from them", k + 1)):
        draw.text((pad + column * (size + pad), 3), label, fill="black")
    for r, (_, sources, gt, render, _, _) in enumerate(rows):
        tiles = _tile(torch.cat([sources, gt[None], render[None]]), size)
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (pad + c * (size + pad), header + pad + r * (size + pad)))
    return sheet


def _samples_sheet(samples, note: str, size: int, min_width: int, pad: int = 4, line: int = 12):
    """The note (wrapped), then one row per category: each sample's SAMPLE_VIEWS frames, the
    category's name over its first tile. ``samples``: [(category, frames (T, 3, H, W))]."""
    import torch
    from PIL import Image, ImageDraw

    categories = list(dict.fromkeys(c for c, _ in samples))
    per_row = max(sum(c == name for c, _ in samples) for name in categories) * len(SAMPLE_VIEWS)
    width = max(min_width, per_row * (size + pad) + pad)
    lines = _text_lines(note, width - 2 * pad)
    header = 2 * pad + line * len(lines)
    sheet = Image.new("RGB", (width, header + len(categories) * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, text in enumerate(lines):
        draw.text((pad, pad + i * line), text, fill="black")
    for r, name in enumerate(categories):
        frames = torch.cat([f[list(SAMPLE_VIEWS)] for c, f in samples if c == name])  # (n * views, 3, H, W)
        y = header + r * (size + pad)
        for c, tile in enumerate(_tile(frames, size)):
            sheet.paste(tile, (pad + c * (size + pad), y))
        draw.text((pad + 2, y + 2), name, fill="black")
    return sheet


def write_summary(rows, out_png: Path, size: int = 96, samples=None, samples_note: str = "",
                  sample_size: int = 0) -> None:
    """The picture: the reconstruction rows (tiles of ``size`` pixels), then (when ``samples`` are
    given) the pre-trained model's samples under their label (tiles of ``sample_size``, default ``size``)."""
    from PIL import Image

    sheets = [_reconstruction_sheet(rows, size)]
    if samples:
        sheets.append(_samples_sheet(samples, samples_note, sample_size or size, sheets[0].width))
    sheet = Image.new("RGB", (max(s.width for s in sheets), sum(s.height for s in sheets)), "white")
    for i, part in enumerate(sheets):
        sheet.paste(part, (0, sum(s.height for s in sheets[:i])))
    tmp = out_png.with_name(out_png.name + ".tmp.png")
    sheet.save(tmp, optimize=True)
    os.replace(tmp, out_png)  # never a partial file under the final name


def pretrained_note(folder: Path = PRETRAINED) -> str:
    """The label of the pre-trained samples, with the training time its pretraining.json records
    (on CPU: the compute time of both stages, which a shared machine's wall clock overstates)."""
    info = json.loads((folder / "pretraining.json").read_text())
    where = info["device"]
    if where == "cpu":
        where = "one CPU core" if info["torch_threads"] == 1 else f"{info['torch_threads']} CPU cores"
    return (f"samples from a small model pre-trained on the built-in data for {info['train_minutes']} min on "
            f"{where}; not trained in this demo (class-conditional voxel latent diffusion, "
            f"{SAMPLE_SETTINGS['sampler']} {SAMPLE_SETTINGS['steps']} steps, guidance "
            f"{SAMPLE_SETTINGS['guidance_scale']})")


def sample_pretrained(out_dir: Path, folder: Path = PRETRAINED, per_class: int = SAMPLES_PER_CLASS,
                      n_frames: int = N_FRAMES, size: int = SAMPLE_SIZE, seed: int = SEED):
    """Samples of every category of the shipped model, each written as ``out_dir/<category>_<i>.mp4``.

    Returns [(category, turntable frames (n_frames, 3, size, size))], per_class per category.
    """
    import torch

    import holo3d
    from holo3d.render.trajectories import turntable_cameras
    from holo3d.sample.frame_renderer import render_views
    from holo3d.sample.video_writer import write_video

    model = holo3d.load(folder, device="cpu")
    categories = [c for c in model.category_names for _ in range(per_class)]
    labels = torch.cat([model.conditions(per_class, c)["label"] for c in model.category_names])
    # every category in one call: one denoising loop over the whole batch costs about half of one per category
    occupancy = model.sample(len(labels), cond={"label": labels}, generator=torch.Generator().manual_seed(seed),
                             **SAMPLE_SETTINGS)  # (n, 1, R, R, R)
    cameras = turntable_cameras(n_frames, elevation_deg=20.0, distance=SAMPLE_CAMERA_DISTANCE * model.scene_extent)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for k, (category, grid) in enumerate(zip(categories, occupancy)):
        frames = render_views(model, grid, cameras, (size, size), SAMPLE_CHUNK)["rgb"]  # (T, 3, S, S)
        write_video(out_dir / f"{category}_{k % per_class}.mp4", frames)
        samples.append((category, frames))
    return samples


def report(exp_dir: Path, rows) -> None:
    metrics = json.loads((exp_dir / "reconstructions" / "metrics.json").read_text())
    print(f"\nfew-view reconstruction of held-out objects ({N_SOURCE_VIEWS} source views each; PSNR over "
          f"{N_REPORT_VIEWS} held-out views): sources | ground truth | holo3d  ->  {exp_dir / 'demo_summary.png'}")
    for name, _, _, _, ours, base in rows:
        print(f"  {name:<12} PSNR holo3d {ours:5.2f} dB   baseline (sources' mean colour) {base:5.2f} dB")
    means = metrics["mean"].items()
    print("  metrics.json mean over all held-out views: "
          + ", ".join(f"{k} {v:.3g}" for k, v in means if isinstance(v, (int, float))))


def report_samples(samples, sample_dir: Path, note: str) -> None:
    counts = {c: sum(c == name for name, _ in samples) for c, _ in samples}
    print(f"\n{note}:")
    print("  " + ", ".join(f"{c} x{n}" for c, n in counts.items()) + f"  ->  {sample_dir}/<category>_<i>.mp4 "
          f"({len(samples[0][1])}-frame turntables) and the lower panel of the summary picture")


def reconstruction_steps(data_dir: Path, exp_dir: Path) -> None:
    """Steps 1-3: dataset (when missing), training, reconstruction videos, as a user types them."""
    python = sys.executable
    if (data_dir / CATEGORY / "frame_annotations.jgz").is_file():
        print(f"== built-in dataset: already at {data_dir}")
    else:
        run_step("built-in dataset", [python, "-m", "holo3d.data.synthetic", "--preset", "demo",
                                      "--categories", CATEGORY, "--sequences", "20", "--out", data_dir])
    run_step("train (configs/demo_reconstruction.yaml)", [
        python, "experiment.py", "--config-name", "demo_reconstruction.yaml", f"exp_dir={exp_dir}",
        f"data_source_Holo3DDataSource_args.dataset_map_provider_JsonIndexDatasetMapProviderV2_args."
        f"dataset_root={data_dir}", *TRAIN_OVERRIDES])
    run_step("few-view reconstruction of held-out objects", [
        python, "visualize_reconstruction.py", f"exp_dir={exp_dir}", "device=cpu", "max_sequences=3",
        f"n_source_views={N_SOURCE_VIEWS}", f"n_frames={N_FRAMES}", "video_size=[64,64]"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data-dir", default="data/builtin_demo")
    parser.add_argument("--exp-dir", default="exp/demo")
    args = parser.parse_args(argv)
    data_dir, exp_dir = Path(args.data_dir).resolve(), Path(args.exp_dir).resolve()
    tic = time.perf_counter()
    reconstruction_steps(data_dir, exp_dir)
    rows = summary_rows(exp_dir, N_SOURCE_VIEWS)
    print(f"\n== samples of the pre-trained model in {PRETRAINED} (holo3d.load)", flush=True)
    sample_tic, sample_dir, note = time.perf_counter(), exp_dir / "pretrained_samples", pretrained_note()
    samples = sample_pretrained(sample_dir)
    print(f"-- samples: done in {time.perf_counter() - sample_tic:.0f} s", flush=True)
    write_summary(rows, exp_dir / "demo_summary.png", samples=samples, samples_note=note, sample_size=2 * SAMPLE_SIZE)
    report(exp_dir, rows)
    report_samples(samples, sample_dir, note)
    print(f"\nholo3d demo finished in {time.perf_counter() - tic:.0f} s:")
    print(f"  dataset          {data_dir}")
    print(f"  experiment       {exp_dir}  (expconfig.yaml, train.log, checkpoints/)")
    print(f"  reconstructions  {exp_dir / 'reconstructions'}  (<object>_views.mp4: GT | render | depth, "
          f"<object>_turntable.mp4, metrics.json)")
    print(f"  samples          {sample_dir}  (pre-trained; train your own on a GPU: python experiment.py "
          "--config-name base.yaml, then python generate_samples.py exp_dir=exp/base)")
    print("  dashboard        make dashboard  (then re-run training with training_loop_HoloTrainingLoop_args.logger=visdom)")


if __name__ == "__main__":
    main()
