"""The training step of the public unofficial GeNVS code, timed on batches of holo3d's GeNVS workload (one GPU).

    GENVS_UNOFFICIAL_DIR=~/src/genvs_unofficial python -m holo3d.bench.unofficial_genvs_step --batch 16 \\
        --out public.jsonl
    python -m holo3d.bench.unofficial_genvs_step --compare holo3d.jsonl public.jsonl     # ratios only

GENVS_UNOFFICIAL_DIR (or ``--public-dir``) is a user's checkout of github.com/jfozard/genvs_unofficial.
Its code is imported from there (``sys.path``), never copied into holo3d. Its main branch lacks
k_diffusion/models/ (k_diffusion/__init__.py imports it); the author's commit cd94d86 ("Missing parts
of k-diffusion") adds it: ``git -C DIR checkout cd94d86 -- k_diffusion/models``. Its imports need
einops, jsonmerge, kornia, scikit-image, torchsde, torchdiffeq, clip-anytorch, clean-fid, resize-right
and segmentation-models-pytorch (its dlv3/ uses the 0.3 encoder API; tested with 0.3.3 and timm 0.9.2).

The model: its ``NerfDiffDLV3`` (genvs_model.py; input network DeepLabV3+ on ResNet-34, frustum
volume NeRF rendering a 16-channel 64^2 latent image, k-diffusion image_v1 denoiser at 128 px) with
the ``nerf_diff`` block of the config train.py loads by default (config/config_high_noise.yaml, whose
k_configs/config_128_high.json differs from config_128_{mid,low}.json only in noise levels), except
that its encoder's ImageNet weights are not downloaded (``encoder_weights=None``; the cost is the same).

One step, as its train.py runs one optimizer step: ``accumulation`` micro-batches of forward
(``loss, details = model(data)``; the loss and each detail read with ``.item()`` as its loop logs
them), backward each, then ``clip_grad_norm_(1.0)``, the (disabled) GradScaler's step and update,
AdamW (its three parameter groups and hyper-parameters), ``zero_grad``. Its configs have
``use_amp: False``, so the step is fp32 (TF32: PyTorch's defaults unless ``--tf32``). Left out:
train.py's DDP wrapper (gloo, world size = GPU count; one all-reduce per accumulation cycle), the
per-epoch LR schedule and the periodic sampling, so the figure does not charge it for them.

The batch: its data loader's layout, ``views`` (its dataset's nimg, 4) posed 128 px images per scene,
random tensors drawn on the device in the dtypes its collate gives (images in [-1, 1], cam-to-world
poses in its OpenGL convention on an orbit at SRN cars' 1.3 distance, normalised to the first view
as its dataset does, SRN intrinsics / 8; camera_k and camera_d float64). Scenes per step = batch x
accumulation, paired with holo3d's ``--model genvs`` scenes per step (16 target + input pairs of 128
px, configs/genvs_srn_cars.yaml). Its forward denoises one target view per scene (the last view), so
images/s counts target views per second, as holo3d's ``items_per_s`` does.

Its forward draws the number of input views (1 or 2), whether to augment, and the unconditional
drop per step (Python's ``random``, seeded by ``--seed``), so step times are bimodal: the figures use
the mean over ``repeats`` (a long run's throughput); the median is kept beside it.

Figures (the bench Reporter's JSON lines): public.train.step_time (s, mean), public.train.images_per_s
(target views/s), public.train.peak_memory (GiB). ``--compare`` pairs them with holo3d's system.train
lines (``python -m holo3d.bench --model genvs --only train``) of the same scenes per step and image size,
and prints holo3d / public images/s and both parameter counts.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.util
import math
import os
import random
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch

from holo3d.bench.model_setup import backend_flags, backend_state
from holo3d.bench.report import Reporter, checkout_commit, compare_or_run
from holo3d.bench.timing import free_device_memory, peak_memory_gib, reset_peak_memory, time_fn

PUBLIC_REPO = "https://github.com/jfozard/genvs_unofficial"
ENV_VAR = "GENVS_UNOFFICIAL_DIR"
DEFAULT_CONFIG = "config/config_high_noise.yaml"  # train.py's @hydra.main config_name
EXPECTED_FILES = ("genvs_model.py", "k_pipeline.py", "nerf/network_multi.py", "nerf/utils.py", "dlv3/model.py",
                  "k_diffusion/__init__.py")
MODELS_FIX = "git -C {dir} checkout cd94d86 -- k_diffusion/models"
# import name -> pip package, for every third-party module its model's import chain loads
REQUIRED_MODULES = {
    "einops": "einops", "jsonmerge": "jsonmerge", "kornia": "kornia", "skimage": "scikit-image",
    "torchsde": "torchsde", "torchdiffeq": "torchdiffeq", "scipy": "scipy", "clip": "clip-anytorch",
    "cleanfid": "clean-fid", "resize_right": "resize-right", "omegaconf": "omegaconf",
    "segmentation_models_pytorch": "segmentation-models-pytorch==0.3.3", "torchvision": "torchvision",
}
IMAGE_SIZE, VIEWS, SRN_DISTANCE = 128, 4, 1.3  # its dataset: 128 px, nimg=4 views, SRN cars' camera radius
SRN_K = ((525.0, 0.0, 256.0), (0.0, 525.0, 256.0), (0.0, 0.0, 1.0))  # SRN cars intrinsics (512 px originals)
HARD_CODED_CUDA = ("genvs_model.py's NerfDiffDLV3.forward calls .cuda() on data['imgs'], data['poses'], "
                   "data['camera_k'], data['camera_d'], the ImageNet statistics and the zero consistency "
                   "losses (train.py also calls model.cuda())")


class PublicCodeError(RuntimeError):
    """The public code cannot be found, imported or run from the given folder."""


# ------------------------------------------------------------------------------------- the checkout


def check_checkout(public_dir: str) -> Path:
    """The checkout's root; refuses a folder that lacks one of its files, naming the folder and file."""
    root = Path(public_dir or "").expanduser()
    if not public_dir or not root.is_dir():
        raise PublicCodeError(f"{ENV_VAR}={public_dir!r} is not a folder; set {ENV_VAR} or --public-dir to a "
                              f"checkout of {PUBLIC_REPO}")
    missing = [f for f in EXPECTED_FILES if not (root / f).is_file()]
    if missing:
        raise PublicCodeError(f"{ENV_VAR}={str(root)!r} is not a checkout of {PUBLIC_REPO}: no {missing[0]} there")
    if not (root / "k_diffusion" / "models" / "__init__.py").is_file():
        raise PublicCodeError(f"{ENV_VAR}={str(root)!r} has no k_diffusion/models/ (its main branch omits it, "
                              f"k_diffusion/__init__.py imports it); add it with: {MODELS_FIX.format(dir=root)}")
    return root.resolve()


def check_modules(modules: Dict[str, str] = REQUIRED_MODULES) -> None:
    """Refuses, naming every missing module and its pip package, before any import starts."""
    missing = [f"{name} (pip install {package})" for name, package in modules.items()
               if importlib.util.find_spec(name) is None]
    if missing:
        raise PublicCodeError("the public GeNVS code imports modules that are not installed: " + ", ".join(missing))


def import_public(root: Path):
    """Its ``genvs_model`` module, imported from ``root`` (its prints go to stderr)."""
    check_modules()
    sys.path.insert(0, str(root))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return importlib.import_module("genvs_model")
    except ModuleNotFoundError as error:
        raise PublicCodeError(f"cannot import the public code (genvs_model) from {ENV_VAR}={str(root)!r}: "
                              f"module {error.name!r} is missing") from None
    except Exception as error:  # noqa: BLE001 - any other import failure is reported the same way
        raise PublicCodeError(f"cannot import the public code (genvs_model) from {ENV_VAR}={str(root)!r}: "
                              f"{type(error).__name__}: {error}") from None



# ------------------------------------------------------------------------------------- model


def load_public_config(root: Path, name: str):
    """Its train config (OmegaConf), refusing one without the ``nerf_diff`` block."""
    from omegaconf import OmegaConf

    path = root / name
    if not path.is_file():
        raise PublicCodeError(f"no config {name} in {ENV_VAR}={str(root)!r}")
    cfg = OmegaConf.load(path)
    if "nerf_diff" not in cfg:
        raise PublicCodeError(f"{path}: no nerf_diff block (the model's arguments)")
    return cfg


def build_public(module, root: Path, cfg, device: torch.device, seed: int):
    """(model in train mode on device, AdamW as its train.py sets it up)."""
    params = dict(cfg.nerf_diff)
    params["k_diffusion_config"] = str(root / params.get("k_diffusion_config", "k_configs/config_128_mid.json"))
    # no ImageNet download for its encoder: same architecture, random weights
    module.DeepLabV3Plus = functools.partial(module.DeepLabV3Plus, encoder_weights=None)
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(sys.stderr):
        model = module.NerfDiffDLV3(**params).to(device).train()
    groups = [{"params": model.input_unet.parameters(), "lr": cfg.get("lr_in", 1e-4)},
              {"params": model.nerf.parameters(), "lr": cfg.get("lr_nerf", 2e-4)},
              {"params": model.ddpm_pipeline.parameters(), "lr": cfg.get("lr_diff", 1e-5)}]
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.99), eps=1e-8, weight_decay=1e-2)
    return model, optimizer


def param_counts(model: torch.nn.Module) -> Dict[str, float]:
    """Parameters in millions: the whole model and its three parts."""
    count = lambda m: round(sum(p.numel() for p in m.parameters()) / 1e6, 3)
    return {"params_m": count(model), "input_unet_params_m": count(model.input_unet),
            "nerf_params_m": count(model.nerf), "denoiser_params_m": count(model.ddpm_pipeline.inner_model)}


# ------------------------------------------------------------------------------------- batches


def orbit_poses(n: int, radius: float, generator: torch.Generator) -> torch.Tensor:
    """(n, 4, 4) float64 cam-to-world poses, OpenGL axes (the camera looks down -z) at random points of
    the upper sphere of ``radius``, all aimed at the origin."""
    azimuth = torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi
    elevation = torch.rand(n, generator=generator, dtype=torch.float64) * 1.2 + 0.1
    back = torch.stack([elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(), elevation.sin()], -1)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(back)
    right = torch.nn.functional.normalize(torch.cross(up, back, dim=-1), dim=-1)
    true_up = torch.cross(back, right, dim=-1)
    poses = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    poses[:, :3, :3] = torch.stack([right, true_up, back], -1)
    poses[:, :3, 3] = back * radius
    return poses


def relative_to_first(poses: torch.Tensor) -> torch.Tensor:
    """(V, 4, 4): the poses moved so that the first camera sits at (0, 0, d) with identity rotation,
    d its distance from the origin (the frame its dataset hands to the model)."""
    rot, trans = poses[0, :3, :3], poses[0, :3, 3]
    to_first = torch.eye(4, dtype=poses.dtype)
    to_first[:3, :3] = rot.T
    to_first[:3, 3] = -rot.T @ trans + torch.tensor([0.0, 0.0, float(trans.norm())], dtype=poses.dtype)
    return to_first @ poses


def synthetic_batch(scenes: int, views: int, size: int, device: torch.device, seed: int) -> Dict[str, torch.Tensor]:
    """Its data loader's batch for ``scenes`` scenes: imgs (S, V, 3, size, size) float32 in [-1, 1],
    poses (S, V, 4, 4) float32, intrinsics (S, 4) float32 (on the CPU, where its forward leaves them),
    K (S, 3, 3), camera_k (S,) and camera_d (S,) float64; the rest on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    imgs = torch.rand(scenes, views, 3, size, size, generator=generator) * 2 - 1
    poses = torch.stack([relative_to_first(orbit_poses(views, SRN_DISTANCE, generator)) for _ in range(scenes)])
    k = torch.tensor(SRN_K, dtype=torch.float64)
    intrinsics = torch.tensor([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], dtype=torch.float32) / 8
    return {"imgs": imgs.to(device), "poses": poses.float().to(device), "intrinsics": intrinsics.repeat(scenes, 1),
            "K": k.repeat(scenes, 1, 1), "camera_k": torch.full((scenes,), float(k[0, 0] / k[0, 2]),
                                                                dtype=torch.float64, device=device),
            "camera_d": poses[:, 0, :3, 3].norm(dim=-1).to(device)}


# ------------------------------------------------------------------------------------- the step


@contextlib.contextmanager
def cuda_calls_on(device: torch.device) -> Iterator[None]:
    """On a CUDA device: nothing. On the CPU (``--device cpu``, to check that the harness runs), its
    hard-coded ``Tensor.cuda()`` calls return the tensor unchanged while the block runs."""
    if device.type == "cuda":
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def public_step(model, optimizer, scaler, micro_batches: Sequence[Dict[str, Any]], use_amp: bool,
                device: torch.device) -> None:
    """One optimizer step of its train.py: forward + backward per micro-batch (logging reads), then
    clipping, the scaler's step and update, zero_grad."""
    for data in micro_batches:
        with torch.autocast(device.type, enabled=use_amp):
            loss, details = model(data)
        scaler.scale(loss).backward()
        loss.item()
        for value in details.values():
            value.item()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad()


def step_config(args, scenes: int, counts: Dict[str, float], cfg, root: Path, device) -> Dict[str, Any]:
    """A line's ``config``: the batch layout, the public model and where it came from."""
    return {"scenes_per_step": scenes * args.accumulation, "batch": scenes, "accumulation": args.accumulation,
            "views_per_scene": args.views, "image_size": IMAGE_SIZE, "targets_per_scene": 1,
            "precision": "fp16-amp" if cfg.get("use_amp", False) else "fp32", "warmup": args.warmup,
            "repeats": args.repeats, "bench": "genvs_unofficial", "device": str(device), **backend_state(),
            "public_dir": str(root), "public_commit": checkout_commit(root), "public_config": args.config,
            "k_diffusion_config": cfg.nerf_diff.get("k_diffusion_config"), **counts,
            "batch_source": "random tensors in its data loader's layout and dtypes, drawn on the device"}


def measure(reporter: Reporter, built, scenes: int, args, device: torch.device) -> None:
    """The three figures of one batch size (an out-of-memory step gives status "oom" lines)."""
    model, optimizer, cfg, root, counts = built
    config = step_config(args, scenes, counts, cfg, root, device)
    use_amp = bool(cfg.get("use_amp", False))
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    batches = [synthetic_batch(scenes, args.views, IMAGE_SIZE, device, args.seed + i) for i in range(args.accumulation)]
    random.seed(args.seed)
    free_device_memory(device)
    reset_peak_memory(device)
    try:
        with cuda_calls_on(device):
            timing = time_fn(lambda: public_step(model, optimizer, scaler, batches, use_amp, device), device,
                             args.warmup, args.repeats)
    except torch.OutOfMemoryError as error:
        optimizer.zero_grad(set_to_none=True)
        for figure, unit in (("step_time", "s"), ("images_per_s", "images/s"), ("peak_memory", "GiB")):
            reporter.emit(f"public.train.{figure}", None, unit, config, status="oom", error=str(error)[:300])
        return
    memory, mean_s = peak_memory_gib(device), statistics.fmean(timing.times_s)
    images = scenes * args.accumulation  # one denoised target view per scene
    reporter.emit("public.train.step_time", mean_s, "s", config, mean_s=mean_s, **timing.stats())
    reporter.emit("public.train.images_per_s", images / mean_s, "images/s", config, images_per_step=images,
                  median_images_per_s=images / timing.median_s)
    reporter.emit("public.train.peak_memory", memory["allocated_gib"], "GiB", config,
                  reserved_gib=memory["reserved_gib"])


def run(args) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PublicCodeError(f"no CUDA device here, and {HARD_CODED_CUDA}: run it on a GPU machine, or pass "
                              "--device cpu to check that the harness runs (those calls then do nothing)")
    root = check_checkout(args.public_dir)
    module = import_public(root)
    cfg = load_public_config(root, args.config)
    model, optimizer = build_public(module, root, cfg, device, args.seed)
    counts = param_counts(model)
    print(f"public GeNVS ({args.config}): {counts['params_m']} M parameters (input network "
          f"{counts['input_unet_params_m']}, NeRF {counts['nerf_params_m']}, denoiser "
          f"{counts['denoiser_params_m']})", file=sys.stderr, flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    reporter = Reporter(device, args.out)
    with backend_flags({"on": True, "off": False, "default": None}[args.tf32], False):
        for scenes in args.batch:
            measure(reporter, (model, optimizer, cfg, root, counts), scenes, args, device)
    return 0


# ------------------------------------------------------------------------------------- ratios



def _holo_key(line: Dict[str, Any]):
    batch = line["config"]["system"]["batch"]
    return batch["scenes"], batch["image_size"]


def compare(holo_lines: Sequence[Dict[str, Any]], public_lines: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (scenes per step, image size) measured by both: target views/s and parameters (millions) of
    each, speed-up = holo3d / public images/s, and the parameter ratio holo3d / public."""
    holo = {_holo_key(ln): ln for ln in holo_lines if ln.get("figure") == "system.train"
            and ln.get("status") == "ok" and ln.get("model") == "genvs"}
    public = {(ln["config"]["scenes_per_step"], ln["config"]["image_size"]): ln for ln in public_lines
              if ln.get("figure") == "public.train.images_per_s" and ln.get("status") == "ok"}
    rows = []
    for key in sorted(set(holo) & set(public)):
        h, p = holo[key], public[key]
        row = {"scenes": key[0], "image_size": key[1], "holo3d_precision": h["config"]["precision"],
               "holo3d_images_per_s": h["items_per_s"], "public_images_per_s": p["value"],
               "public_precision": p["config"]["precision"], "holo3d_params_m": h["config"]["system"]["params_m"],
               "public_params_m": p["config"]["params_m"]}
        row["speedup"] = row["holo3d_images_per_s"] / row["public_images_per_s"]
        row["params_ratio"] = row["holo3d_params_m"] / row["public_params_m"]
        rows.append(row)
    return rows


def format_rows(rows: Sequence[Dict[str, Any]]) -> str:
    """A plain-text table of ``compare``'s rows."""
    lines = ["scenes/step | holo3d images/s (precision) | public images/s (precision) | speed-up | "
             "params M holo3d / public"]
    for r in rows:
        holo = f"{r['holo3d_images_per_s']:.2f} ({r['holo3d_precision']})"
        public = f"{r['public_images_per_s']:.2f} ({r['public_precision']})"
        lines.append(f"{r['scenes']:>11} | {holo:>27} | {public:>27} | {r['speedup']:>7.2f}x | "
                     f"{r['holo3d_params_m']:.1f} / {r['public_params_m']:.1f} ({r['params_ratio']:.2f}x)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- command line


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ints = lambda t: [int(v) for v in t.split(",") if v]
    p = argparse.ArgumentParser(prog="python -m holo3d.bench.unofficial_genvs_step", description=__doc__.split("\n")[0])
    p.add_argument("--public-dir", default=os.environ.get(ENV_VAR, ""),
                   help=f"checkout of jfozard/genvs_unofficial (default: ${ENV_VAR})")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="its train config, relative to the checkout")
    p.add_argument("--batch", type=ints, default=[16], help="scenes per micro-batch, e.g. 2,16")
    p.add_argument("--accumulation", type=int, default=1,
                   help="micro-batches per optimizer step (its configs: 16 with batch 2)")
    p.add_argument("--views", type=int, default=VIEWS, help="posed views per scene (its dataset's nimg: 4)")
    p.add_argument("--device", default="cuda", help="cuda, or cpu to check that the harness runs")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--tf32", choices=("on", "off", "default"), default="default",
                   help="TF32 switches (default: PyTorch's, as its trainer leaves them)")
    p.add_argument("--out", help="also append the JSON lines to this file")
    p.add_argument("--compare", nargs=2, metavar=("HOLO3D_JSONL", "PUBLIC_JSONL"),
                   help="only print the ratios of two earlier runs' lines")
    args = p.parse_args(argv)
    if args.accumulation < 1 or args.views < 2 or min(args.batch or [0]) < 1:
        p.error(f"need --accumulation >= 1, --views >= 2 and --batch >= 1; got {args.accumulation}, "
                f"{args.views}, {args.batch}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    return compare_or_run(parse_args(argv), "holo3d.bench.unofficial_genvs_step", compare, format_rows, run,
                          PublicCodeError, "no (scenes per step, image size) measured by both runs")


if __name__ == "__main__":
    sys.exit(main())
