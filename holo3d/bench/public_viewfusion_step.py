"""The public ViewFusion code's training step and generation, timed on batches of holo3d's shapes.

    VIEWFUSION_PUBLIC_DIR=~/src/view-fusion python -m holo3d.bench.public_viewfusion_step --batch 32 \\
        --out public.jsonl                                             # training step
    python -m holo3d.bench.public_viewfusion_step --generation --out public.jsonl   # 1000-step generation
    python -m holo3d.bench.public_viewfusion_step --compare holo3d.jsonl public.jsonl   # ratios only

VIEWFUSION_PUBLIC_DIR (or ``--public-dir``) is a user's checkout of github.com/bronemos/view-fusion.
Its model files (model/view_fusion.py, model/unet.py, utils/schedulers.py) are loaded from there by
path, never copied into holo3d; they need numpy, tqdm and PyYAML besides torch. Its experiment.py is
not imported (it needs webdataset, wandb, einops ...): its training loop body is replayed here.

The model: ``ViewFusion(UNet(**denoise_net_params), beta_schedule)`` of configs/small-v100-4.yaml
(``--config``): the paper's small model (64 x [1, 2, 3, 5], 3 res blocks, attention at 16), NMR
64 px, max_views 6, weighting on, absolute angles (in_channel 6; a config with ``relative: true``
gets its loader's 6-channel relative conditioning). The noise schedule is set on the device, as
experiment.py does (set_new_noise_schedule's default device is "cuda"; nothing else needs CUDA).

One training step, as experiment.py's ``train`` runs it after the batch is on the device: set the
lr from its LrScheduler, draw view_count ~ U{1..max_views} per sample, ``zero_grad``, forward (its
loss), ``loss.item()``, backward, Adam step. fp32 (no autocast); TF32 switches as PyTorch leaves
them unless ``--tf32``. The batch of B targets is drawn as its NMR loader yields one: per object 24
views of ``holo3d.bench.synthetic_batch.synthetic_frame_data`` (random images in [0, 1] on an
orbit), the target frame 0, cond the other 23 views (only the first view_count are used), the angle
the target's azimuth (relative mode: view 1's azimuth minus the target's). holo3d's ``--model
viewfusion`` step draws S scenes x 7 frames of the same generator and keeps a random prefix of
1..6 views per target, so both sides see the same batch shape and view-count distribution; items
are targets (training samples).

``--generation``: ``model(y_cond, view_count=6, angle, generate=True)`` for one target from 6 views
under no_grad, over the config's test schedule (1000 steps; experiment.py never switches to it,
so its own eval samples with the 2000-step training schedule), after a 1-step warm-up.

Figures (the bench Reporter's JSON lines, value in seconds): public.train (items_per_s, step_s,
peak_memory_gib, config.batch, config.params_m) and public.generation (n, steps, views_per_target,
sample_s). ``--compare`` pairs them with holo3d's system.train / system.sample lines of
``python -m holo3d.bench --model viewfusion`` and prints holo3d / public speed-ups and both
parameter counts.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from holo3d.bench.model_setup import backend_flags, backend_state
from holo3d.bench.report import Reporter, checkout_commit, compare_or_run
from holo3d.bench.timing import peak_memory_gib, reset_peak_memory, synchronize, time_fn

PUBLIC_REPO = "https://github.com/bronemos/view-fusion"
ENV_VAR = "VIEWFUSION_PUBLIC_DIR"
DEFAULT_CONFIG = "configs/small-v100-4.yaml"
MODEL_FILES = ("model/view_fusion.py", "model/unet.py", "utils/schedulers.py")
NMR_VIEWS = 24  # views per NMR object; its loader yields the target and the other 23 as cond
GENERATION_VIEWS = 6
# --tiny (CPU smoke runs): overrides of the public config, recorded in every line; the sizes of
# ``python -m holo3d.bench --model viewfusion --cpu`` (norm_groups: its widths are not multiples of 32).
TINY_NET = {"image_size": 16, "inner_channel": 16, "norm_groups": 16, "channel_mults": [1, 2], "res_blocks": 1,
            "attn_res": [8]}
TINY_MAX_VIEWS = 2
MIN_GENERATION_STEPS = 9  # its generate() asserts more timesteps than its 8 recorded intermediates
# The targets: holo3d / public at least this much faster.
TARGETS = {"train": 3.0, "generation": 5.0}


class PublicCodeError(RuntimeError):
    """The public code cannot be found, loaded or run from VIEWFUSION_PUBLIC_DIR."""


# ------------------------------------------------------------------------------------- the public code


def checkout_root(public_dir: str, config: str) -> Path:
    """``public_dir`` as a Path once it holds the model files and ``config``; else a PublicCodeError
    naming the folder and the first missing file."""
    if not public_dir:
        raise PublicCodeError(f"no public checkout given: set {ENV_VAR} or --public-dir to a checkout of "
                              f"{PUBLIC_REPO}")
    root = Path(public_dir).expanduser()
    for name in (*MODEL_FILES, config):
        if not (root / name).is_file():
            raise PublicCodeError(f"{ENV_VAR}={public_dir!r} is not a checkout of {PUBLIC_REPO}: "
                                  f"{root / name} is missing")
    return root


def load_file(root: Path, relative: str) -> ModuleType:
    """One file of the checkout as a module of its own (no sys.path entry: its package is "model",
    a name too generic to put on the path). A missing dependency is named."""
    name = "viewfusion_public." + relative[:-3].replace("/", ".")
    spec = importlib.util.spec_from_file_location(name, root / relative)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as error:
        raise PublicCodeError(f"cannot load {root / relative} ({ENV_VAR}={str(root)!r}): it imports "
                              f"{error.name!r}, which is not installed here") from None
    return module



def public_config(root: Path, config: str, tiny: bool) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the public YAML config with the run's overrides, those overrides as dotted keys)."""
    import yaml

    cfg = yaml.safe_load((root / config).read_text())
    overrides: Dict[str, Any] = {}
    if tiny:
        overrides.update({f"model.denoise_net_params.{k}": v for k, v in TINY_NET.items()})
        overrides["data.params.max_views"] = TINY_MAX_VIEWS
    cfg = copy.deepcopy(cfg)
    for key, value in overrides.items():
        *path, leaf = key.split(".")
        node = cfg
        for part in path:
            node = node[part]
        node[leaf] = value
    return cfg, overrides


def build_public(root: Path, cfg: Dict[str, Any], device: torch.device, seed: int):
    """(ViewFusion on device with its training schedule, Adam, LrScheduler) as experiment.py builds them."""
    unet, view_fusion = load_file(root, "model/unet.py"), load_file(root, "model/view_fusion.py")
    schedulers = load_file(root, "utils/schedulers.py")
    torch.manual_seed(seed)
    params = cfg["model"]["view_fusion_params"]
    with contextlib.redirect_stdout(sys.stderr):  # it prints its settings; stdout carries the JSON lines
        model = view_fusion.ViewFusion(unet.UNet(**cfg["model"]["denoise_net_params"]), params["beta_schedule"],
                                       params.get("weighting_train", True), params.get("weighting_inference", True))
    model = model.to(device)
    model.set_new_noise_schedule(device=device, phase="train")
    lr = schedulers.LrScheduler(peak_lr=1e-4, peak_it=cfg.get("lr_warmup", 2500),
                                decay_it=cfg.get("decay_it", 4000000), decay_rate=0.16)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr.get_cur_lr(0))
    return model, optimizer, lr


def params_m(model: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 3)


# ------------------------------------------------------------------------------------- batches and steps


def public_batch(cfg: Dict[str, Any], n: int, device: torch.device, seed: int) -> Dict[str, torch.Tensor]:
    """What its NMR loader yields for n objects, on device: y_0 (n, 3, H, W), y_cond (n, 23, C, H, W)
    with C = 3 (6 in relative mode: view 1 stacked onto every view), angle (n, 1) in radians."""
    from holo3d.bench.synthetic_batch import synthetic_frame_data
    from holo3d.data.scene_batch import view_angles

    size = cfg["model"]["denoise_net_params"]["image_size"]
    frames = synthetic_frame_data(n, NMR_VIEWS, size, device, seed=seed)
    images = frames.image_rgb.view(n, NMR_VIEWS, 3, size, size)
    azimuth = view_angles(frames.camera)[:, 0].view(n, NMR_VIEWS).to(device)
    cond, angle = images[:, 1:], azimuth[:, :1]
    if cfg["model"].get("relative", False):
        cond = torch.cat([images[:, 1:2].expand_as(cond), cond], dim=2)
        angle = azimuth[:, 1:2] - azimuth[:, :1]
    return {"y_0": images[:, 0].contiguous(), "y_cond": cond.contiguous(), "angle": angle.contiguous()}


def public_step(model, optimizer, lr, batch: Dict[str, torch.Tensor], max_views: int, it: int) -> float:
    """One iteration of experiment.py's training loop on a batch already on the device."""
    for group in optimizer.param_groups:
        group["lr"] = lr.get_cur_lr(it)
    view_count = torch.randint(1, max_views + 1, (batch["y_0"].shape[0],)).to(batch["y_0"].device)
    model.train()
    optimizer.zero_grad()
    loss = model(y_0=batch["y_0"], y_cond=batch["y_cond"], view_count=view_count, angle=batch["angle"])
    value = loss.item()  # its loop accumulates the loss on the host every step
    loss.backward()
    optimizer.step()
    return value


def generation_call(model, batch: Dict[str, torch.Tensor], views: int):
    """One target from ``views`` conditioning views with its ``generate`` (the schedule set on the model)."""
    view_count = torch.full((1,), views, dtype=torch.long, device=batch["y_0"].device)

    @torch.no_grad()
    def call():
        model.eval()
        return model(y_cond=batch["y_cond"][:1], view_count=view_count, angle=batch["angle"][:1], generate=True)

    return call


# ------------------------------------------------------------------------------------- measuring


def run_config(args, root: Path, cfg: Dict[str, Any], overrides: Dict[str, Any], model, device) -> Dict[str, Any]:
    """A line's ``config``: where the public code and its config came from, the run's settings."""
    return {"bench": "public_viewfusion", "public_dir": str(root), "public_commit": checkout_commit(root),
            "public_config": args.config, "overrides": overrides, "params_m": params_m(model),
            "precision": "fp32", "device": str(device), "warmup": args.warmup, "repeats": args.repeats,
            "relative": bool(cfg["model"].get("relative", False)), **backend_state(),
            "batch_source": "holo3d.bench.synthetic_batch: 24 random views per object on an orbit, drawn on "
                            "the device as the public NMR loader lays them out"}


def measure_train(reporter: Reporter, args, model, optimizer, lr, cfg, config, device) -> None:
    """public.train for every batch size of ``--batch``."""
    max_views = cfg["data"]["params"]["max_views"]
    size = cfg["model"]["denoise_net_params"]["image_size"]
    for scenes in args.batch:
        batch = public_batch(cfg, scenes, device, args.seed)
        counter = itertools.count()
        line_config = {**config, "batch_size": scenes,
                       "batch": {"scenes": scenes, "frames_per_scene": max_views + 1, "image_size": size},
                       "views_per_sample": f"U{{1..{max_views}}}"}
        reset_peak_memory(device)
        timing = time_fn(lambda: public_step(model, optimizer, lr, batch, max_views, next(counter)), device,
                         args.warmup, args.repeats)
        memory = peak_memory_gib(device)
        reporter.emit("public.train", timing.median_s, "s", line_config, model="viewfusion_public",
                      item="targets (1..max_views conditioning views each)", items_per_step=scenes,
                      items_per_s=scenes / timing.median_s, step_s=timing.median_s,
                      peak_memory_gib=memory["allocated_gib"], reserved_gib=memory["reserved_gib"],
                      **timing.stats())


def set_test_schedule(model, cfg: Dict[str, Any], device: torch.device, steps: Optional[int] = None) -> None:
    """The model's noise schedule: the config's test schedule, over ``steps`` timesteps when given."""
    test = cfg["model"]["view_fusion_params"]["beta_schedule"]["test"]
    model.beta_schedule = {**model.beta_schedule, "bench": {**test, "num_timesteps": steps or test["num_timesteps"]}}
    model.set_new_noise_schedule(device=device, phase="bench")


def measure_generation(reporter: Reporter, args, model, cfg, config, device) -> None:
    """public.generation: one target from GENERATION_VIEWS views (max_views where that is lower, as
    holo3d's sample figure)."""
    views = min(GENERATION_VIEWS, cfg["data"]["params"]["max_views"])
    size = cfg["model"]["denoise_net_params"]["image_size"]
    batch = public_batch(cfg, 1, device, args.seed + 1)
    set_test_schedule(model, cfg, device, MIN_GENERATION_STEPS)  # a short call first: kernels warm
    generation_call(model, batch, views)()
    set_test_schedule(model, cfg, device, args.generation_steps)
    synchronize(device)
    reset_peak_memory(device)
    timing = time_fn(generation_call(model, batch, views), device, 0, args.sample_repeats)
    memory = peak_memory_gib(device)
    line_config = {**config, "repeats": args.sample_repeats, "batch": {"image_size": size}}
    reporter.emit("public.generation", timing.median_s, "s", line_config, model="viewfusion_public",
                  item="target views", n=1, sampler="ddpm (its p_sample loop)", steps=model.num_timesteps,
                  views_per_target=views, sample_s=timing.median_s, items_per_s=1 / timing.median_s,
                  peak_memory_gib=memory["allocated_gib"],
                  what="ViewFusion.generate over the config's test schedule, one target, no_grad, fp32")


def run(args) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PublicCodeError("no CUDA device here; pass --device cpu (the public model code runs on CPU; only "
                              "set_new_noise_schedule defaults to cuda, and the device is passed to it)")
    root = checkout_root(args.public_dir, args.config)
    cfg, overrides = public_config(root, args.config, args.tiny)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, optimizer, lr = build_public(root, cfg, device, args.seed)
    print(f"public ViewFusion ({args.config}, overrides {overrides or 'none'}): {params_m(model)} M parameters",
          file=sys.stderr, flush=True)
    config = run_config(args, root, cfg, overrides, model, device)
    reporter = Reporter(device, args.out)
    with backend_flags({"on": True, "off": False, "default": None}[args.tf32], False):
        if args.generation:
            measure_generation(reporter, args, model, cfg, config, device)
        else:
            measure_train(reporter, args, model, optimizer, lr, cfg, config, device)
    return 0


# ------------------------------------------------------------------------------------- ratios



def _holo_system(line: Dict[str, Any]) -> Dict[str, Any]:
    return line["config"].get("system", {})


def _index(lines: Sequence[Dict[str, Any]], figure: str, key) -> Dict[tuple, Dict[str, Any]]:
    """The ok lines of ``figure`` by ``key(line)`` (holo3d's only where the model is viewfusion)."""
    return {key(ln): ln for ln in lines if ln["figure"] == figure and ln["status"] == "ok"
            and ln.get("model") in ("viewfusion", "viewfusion_public")}


def _train_key(batch: Dict[str, Any]) -> tuple:
    return tuple(batch.get(k) for k in ("scenes", "frames_per_scene", "image_size"))


def _row(kind: str, shape: str, holo: Dict[str, Any], public: Dict[str, Any], speedup: float) -> Dict[str, Any]:
    return {"kind": kind, "shape": shape, "holo3d_items_per_s": holo["items_per_s"],
            "public_items_per_s": public["items_per_s"], "speedup": speedup, "target": TARGETS[kind],
            "holo3d_precision": holo["config"].get("precision"), "public_precision": public["config"].get("precision"),
            "holo3d_params_m": _holo_system(holo).get("params_m"), "public_params_m": public["config"].get("params_m")}


def compare(holo_lines: Sequence[Dict[str, Any]], public_lines: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Rows for every shape measured by both: training (scenes, frames per scene, image size) with
    speed-up = holo3d items/s / public items/s, and generation (n, steps, views, image size) with
    speed-up = public seconds / holo3d seconds; each with both parameter counts and precisions."""
    holo_train = _index(holo_lines, "system.train", lambda ln: _train_key(_holo_system(ln).get("batch", {})))
    public_train = _index(public_lines, "public.train", lambda ln: _train_key(ln["config"]["batch"]))
    rows = []
    for key in sorted(set(holo_train) & set(public_train)):
        holo, public = holo_train[key], public_train[key]
        row = _row("train", "{} scenes x {} frames, {} px".format(*key), holo, public,
                   holo["items_per_s"] / public["items_per_s"])
        if holo.get("peak_memory_gib") and public.get("peak_memory_gib"):  # 0 on CPU
            row.update(holo3d_gib=holo["peak_memory_gib"], public_gib=public["peak_memory_gib"])
        rows.append(row)

    def gen_key(ln, size):
        return (ln["n"], ln["steps"], ln["views_per_target"], size)

    holo_gen = _index(holo_lines, "system.sample",
                      lambda ln: gen_key(ln, _holo_system(ln).get("batch", {}).get("image_size")))
    public_gen = _index(public_lines, "public.generation", lambda ln: gen_key(ln, ln["config"]["batch"]["image_size"]))
    for key in sorted(set(holo_gen) & set(public_gen)):
        holo, public = holo_gen[key], public_gen[key]
        shape = "{} view, {} steps, {} views, {} px".format(*key) + f" (holo3d: {holo.get('sampler')})"
        row = _row("generation", shape, holo, public, public["sample_s"] / holo["sample_s"])
        row.update(holo3d_sampler=holo.get("sampler"), holo3d_s=holo["sample_s"], public_s=public["sample_s"])
        rows.append(row)
    return rows


def format_rows(rows: Sequence[Dict[str, Any]]) -> str:
    """A plain-text table of ``compare``'s rows."""
    lines = [f"{'what':<10} | {'shape':<49} | holo3d items/s (precision) | public items/s (precision) | "
             "speed-up (target) | params M holo3d / public | peak GiB holo3d / public"]
    for r in rows:
        met = "met" if r["speedup"] >= r["target"] else "not met"
        memory = f"{r['holo3d_gib']:.2f} / {r['public_gib']:.2f}" if "holo3d_gib" in r else "-"
        holo = f"{r['holo3d_items_per_s']:.3f} ({r['holo3d_precision']})"
        public = f"{r['public_items_per_s']:.3f} ({r['public_precision']})"
        lines.append(f"{r['kind']:<10} | {r['shape']:<49} | {holo:>26} | {public:>26} | "
                     f"{r['speedup']:>6.2f}x (>= {r['target']:g}x {met}) | "
                     f"{r['holo3d_params_m']} / {r['public_params_m']} | {memory}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- command line


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m holo3d.bench.public_viewfusion_step",
                                description=__doc__.split("\n")[0])
    p.add_argument("--public-dir", default=os.environ.get(ENV_VAR, ""),
                   help=f"checkout of {PUBLIC_REPO} (default: ${ENV_VAR})")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="the public config, relative to the checkout")
    p.add_argument("--batch", type=lambda t: [int(v) for v in t.split(",") if v], default=[32],
                   help="targets per training step, e.g. 28,32 (holo3d's viewfusion_nmr.yaml: 32)")
    p.add_argument("--generation", action="store_true",
                   help="time a generation (one target from 6 views) instead of the training step")
    p.add_argument("--generation-steps", type=int,
                   help="denoising steps of --generation (default: the config's test schedule, 1000)")
    p.add_argument("--sample-repeats", type=int, default=1, help="timed generation calls")
    p.add_argument("--tiny", action="store_true", help="a tiny public model at 16 px, max_views 2 (CPU smoke run)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tf32", choices=("on", "off", "default"), default="default",
                   help="TF32 switches (default: PyTorch's, as the public trainer leaves them)")
    p.add_argument("--out", help="also append the JSON lines to this file")
    p.add_argument("--compare", nargs=2, metavar=("HOLO3D_JSONL", "PUBLIC_JSONL"),
                   help="only print the ratios of two earlier runs' lines")
    args = p.parse_args(argv)
    if args.generation_steps is not None and args.generation_steps < MIN_GENERATION_STEPS:
        p.error(f"--generation-steps {args.generation_steps}: the public generate() needs at least "
                f"{MIN_GENERATION_STEPS}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    return compare_or_run(parse_args(argv), "holo3d.bench.public_viewfusion_step", compare, format_rows, run,
                          PublicCodeError, "no shape measured by both runs")


if __name__ == "__main__":
    sys.exit(main())
