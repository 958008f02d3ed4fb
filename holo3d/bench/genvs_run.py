"""A timed GeNVS run on one GPU: data, bf16 training, held-out metrics, speed, a contact sheet.

    python -m holo3d.bench.genvs_run --minutes 7 --out DIR [--category car] [--batch 24]
    python -m holo3d.bench.genvs_run --tiny --out DIR          # CPU smoke run, < 1 minute

1. data: the built-in cars (or chairs) in SRN format at 128 px (``--data-root``, default
   ``$HOLO3D_DATA_ROOT/genvs_<category>_srn_128``), rendered on the GPU when missing; every frame is
   loaded into device memory once.
2. train: GenvsModel with configs/genvs_srn_<category>s.yaml's model settings, AdamW, bf16 autocast,
   random (target, input) view pairs of random training objects, until the time budget minus the
   evaluation reserve is spent; training images/s (targets per second) after a warm-up.
3. evaluate on held-out (test split) objects, one input view each: PSNR / SSIM (LPIPS when its
   weights exist) of (a) the field's RGB render, (b) denoised views, Heun (deterministic) and Euler
   with churn (stochastic); sharpness ratio = mean image-gradient magnitude of outputs / of GT.
4. speed: one denoiser step at batch 1 and 16, one 50-step Heun view, an autoregressive path of
   ``--path-views`` (50) views end to end.
5. writes DIR/metrics.json and DIR/contact_sheet.png (rows: input | GT | field RGB | Heun | Euler).

GPU memory is capped at ``--max-memory-gib`` (default 40) of the device, so the run can share it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import OmegaConf
from pytorch3d.implicitron.models.renderer.base import EvaluationMode
from pytorch3d.implicitron.tools.config import expand_args_fields, get_default_args
from pytorch3d.renderer.cameras import PerspectiveCameras

from holo3d.bench.timing import peak_memory_gib, reset_peak_memory, synchronize, time_fn
from holo3d.data.srn import SrnDatasetMapProvider
from holo3d.data.synthetic import generate_dataset, get_preset
from holo3d.data.synthetic.srn_writer import SrnWriter, plural
from holo3d.eval import lpips, lpips_unavailable_reason, psnr, sharpness, ssim, write_metrics_json
from holo3d.models.genvs import GenvsModel
from holo3d.sample.contact_sheet import compose_sheet, write_png
from holo3d.io.atomic_file import write_text_atomic
from holo3d.train.checkpoint import save_checkpoint
from holo3d.train.config_cli import compose_config
from holo3d.train.ema import EMA
from holo3d.train.experiment import EXPCONFIG_NAME

MODEL_KEY = "model_factory_HoloModelFactory_args"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m holo3d.bench.genvs_run", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for metrics.json and contact_sheet.png")
    parser.add_argument("--minutes", type=float, default=7.0, help="wall-clock budget of the whole run")
    parser.add_argument("--category", default="car", choices=["car", "chair"])
    parser.add_argument("--data-root", default="", help="SRN-format root (generated when missing)")
    parser.add_argument("--objects", type=int, default=150, help="objects to generate (10%% val, 10%% test)")
    parser.add_argument("--batch", type=int, default=24, help="scenes per step (1 target + 1 input each)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-objects", type=int, default=8)
    parser.add_argument("--eval-views", type=int, default=4, help="target views per held-out object")
    parser.add_argument("--max-memory-gib", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--path-views", type=int, default=50, help="views of the timed autoregressive path")
    parser.add_argument("--path-steps", type=int, default=25, help="Heun steps per view of that path")
    parser.add_argument("--ema-decay", type=float, default=0.999,
                        help="EMA of the weights (with warm-up) that is evaluated and saved; 0: the live weights")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: 32 px, tiny model, < 1 minute")
    parser.add_argument("--save-exp", default="", help="also write the trained model as an experiment folder "
                        "(expconfig.yaml + checkpoint) that distill.py and generate_samples.py load")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------- data


def ensure_data(args, device: torch.device) -> str:
    """The SRN-format root, generated (GPU rendering when available) if it does not exist yet."""
    size = 32 if args.tiny else 128
    default = os.path.join(os.environ.get("HOLO3D_DATA_ROOT", "data"), f"genvs_{args.category}_srn_{size}")
    root = os.path.abspath(args.data_root or default)
    if not os.path.isdir(root):
        spec = dataclasses.replace(get_preset("demo"), categories=(args.category,), image_format="png",
                                   sequences=6 if args.tiny else args.objects, frames=5 if args.tiny else 24,
                                   image_size=(size, size))
        start = time.perf_counter()
        generate_dataset(spec, root, device=device.type, writer_factory=SrnWriter, progress=False, fmt="srn")
        print(f"generated {spec.n_sequences} {args.category}s x {spec.frames} views at {size} px in "
              f"{time.perf_counter() - start:.0f} s: {root}", flush=True)
    return root


@dataclasses.dataclass
class Views:
    """Every view of O objects: images (O, V, 3, H, W) in [0, 1] and camera tensors (O, V, ...)."""

    images: torch.Tensor
    R: torch.Tensor
    T: torch.Tensor
    focal: torch.Tensor
    principal: torch.Tensor

    def cameras(self, obj: torch.Tensor, view: torch.Tensor) -> PerspectiveCameras:
        """Cameras of the (object, view) pairs obj[i], view[i] (flat)."""
        return PerspectiveCameras(R=self.R[obj, view], T=self.T[obj, view], focal_length=self.focal[obj, view],
                                  principal_point=self.principal[obj, view], device=self.images.device)


def load_split(dataset, device: torch.device) -> Views:
    """All frames of an SRN split, grouped by object (objects keep their first V_min views)."""
    groups: Dict[str, list] = {}
    for i in range(len(dataset)):
        frame = dataset[i]
        groups.setdefault(frame.sequence_name, []).append(frame)
    n_views = min(len(g) for g in groups.values())
    frames = [g[:n_views] for g in groups.values()]
    stack = lambda get: torch.stack([torch.stack([get(f) for f in g]) for g in frames]).to(device)  # noqa: E731
    return Views(images=stack(lambda f: f.image_rgb), R=stack(lambda f: f.camera.R[0]),
                 T=stack(lambda f: f.camera.T[0]), focal=stack(lambda f: f.camera.focal_length[0]),
                 principal=stack(lambda f: f.camera.principal_point[0]))


def load_data(root: str, category: str, device: torch.device) -> Dict[str, Views]:
    expand_args_fields(SrnDatasetMapProvider)
    datasets = SrnDatasetMapProvider(dataset_root=root, category=plural(category)).get_dataset_map()
    return {split: load_split(getattr(datasets, split), device) for split in ("train", "test")}


# ------------------------------------------------------------------------------------- model


def config_name(args) -> str:
    return "genvs_demo" if args.tiny else f"genvs_srn_{plural(args.category)}"


def model_fields(args) -> Dict[str, Any]:
    """The GenvsModel arguments of the category's config (genvs_demo's, shrunk to 32 px, for --tiny)."""
    fields = OmegaConf.to_container(compose_config(config_name(args))[MODEL_KEY].model_GenvsModel_args)
    if args.tiny:
        fields.update(image_size=32, latent_size=16, steps_default=4)
        fields["encoder_args"].update(small_channels=8, decoder_channels=16)
        fields["unet_args"].update(model_channels=16, channel_mult=[1, 2])
        fields["renderer_args"].update(n_pts_coarse=16, n_pts_fine=8)
    return fields


def build_model(args, device: torch.device) -> GenvsModel:
    expand_args_fields(GenvsModel)
    cfg = get_default_args(GenvsModel)
    cfg.update(model_fields(args))
    return GenvsModel(**cfg).to(device)


def save_experiment(model: GenvsModel, args, root: str, steps: int) -> Path:
    """The trained model as an experiment folder: the training config with this run's model and data
    settings, and one end-of-epoch checkpoint in the trainer's format (so every loader reads it)."""
    exp_dir = Path(args.save_exp).expanduser().resolve()
    cfg = compose_config(config_name(args), [f"data_root={root}", f"category={plural(args.category)}",
                                             f"exp_dir={exp_dir}"])
    cfg[MODEL_KEY].model_GenvsModel_args = OmegaConf.merge(cfg[MODEL_KEY].model_GenvsModel_args,
                                                           model_fields(args))
    config_yaml = OmegaConf.to_yaml(cfg)
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(exp_dir / EXPCONFIG_NAME, config_yaml)
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "ema": None,
             "epoch": 0, "batch_in_epoch": 0, "iteration": steps, "config": config_yaml}
    return save_checkpoint(exp_dir, 0, state, keep_last=1)


def training_batch(data: Views, batch: int, generator: torch.Generator) -> Dict[str, Any]:
    """FrameData kwargs: ``batch`` random objects x (target, input) of two distinct random views."""
    n_obj, n_views = data.images.shape[:2]
    device = data.images.device
    obj = torch.randint(n_obj, (batch,), generator=generator, device=device).repeat_interleave(2)
    first = torch.randint(n_views, (batch,), generator=generator, device=device)
    second = (first + torch.randint(1, n_views, (batch,), generator=generator, device=device)) % n_views
    view = torch.stack([first, second], 1).flatten()  # (2 * batch,) target, input per scene
    return dict(image_rgb=data.images[obj, view], camera=data.cameras(obj, view),
                sequence_name=[f"scene{i // 2}" for i in range(2 * batch)])  # an object may come twice


def train_step(model, optimizer, batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    """One bf16-autocast AdamW step (gradients clipped to norm 1); returns the model's outputs."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        preds = model(**batch, evaluation_mode=EvaluationMode.TRAINING)
    optimizer.zero_grad(set_to_none=True)
    preds["objective"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return preds


def train(model, data: Views, args, deadline: float, device: torch.device, ema: Optional[EMA]) -> Dict[str, Any]:
    """Steps until ``deadline`` (the batch halves on running out of memory), updating ``ema`` after
    each step; the training figures."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warmup, skip = (10, 1) if args.tiny else (200, 5)  # lr warm-up steps; steps before timing starts
    generator = torch.Generator(device=device).manual_seed(args.seed)
    losses, step, timed_from, timed_start = [], 0, skip, None
    reset_peak_memory(device)
    model.train()
    while time.perf_counter() < deadline or step < 2:
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / warmup)
        try:
            preds = train_step(model, optimizer, training_batch(data, args.batch, generator), device)
        except torch.OutOfMemoryError:
            if args.batch == 1:
                raise
            optimizer.zero_grad(set_to_none=True)
            args.batch, timed_from, timed_start = args.batch // 2, step + skip, None
            torch.cuda.empty_cache()
            print(f"out of memory: batch -> {args.batch}", flush=True)
            continue
        step += 1
        if ema is not None:
            ema.update(model, step)
        if step == timed_from:
            synchronize(device)
            timed_start = time.perf_counter()
        if step % 25 == 0 or step == 1:
            losses.append({"step": step, **{k: round(float(preds[k].detach()), 5)
                                            for k in ("objective", "loss_diffusion", "loss_rgb", "psnr")}})
    synchronize(device)
    timed = step - timed_from
    seconds = time.perf_counter() - timed_start if timed_start is not None else float("nan")
    return {"steps": step, "batch_scenes": args.batch, "step_s": seconds / timed if timed > 0 else None,
            "train_images_per_s": timed * args.batch / seconds if timed > 0 else None,
            "peak_memory": peak_memory_gib(device), "loss_curve": losses}


# ------------------------------------------------------------------------------------- evaluation


def image_scores(pred: torch.Tensor, gt: torch.Tensor, use_lpips: bool) -> Dict[str, float]:
    """PSNR / SSIM (/ LPIPS) means and the sharpness ratio of (B, 3, H, W) predictions."""
    scores = {"psnr": float(psnr(pred, gt).mean()), "ssim": float(ssim(pred, gt).mean()),
              "sharpness_ratio": float(sharpness(pred.float()) / sharpness(gt.float()))}
    if use_lpips:
        scores["lpips"] = float(lpips(pred.float(), gt.float()).mean())
    return scores


@torch.no_grad()
def evaluate(model, data: Views, args, device: torch.device) -> Dict[str, Any]:
    """Held-out objects, input view 0, ``eval_views`` other views as targets: field / Heun / Euler."""
    model.eval()
    n_obj = min(args.eval_objects, data.images.shape[0])
    n_views = min(args.eval_views, data.images.shape[1] - 1)
    obj = torch.arange(n_obj, device=device)
    scene = model.encode(data.images[:n_obj, :1], data.cameras(obj, torch.zeros_like(obj)))  # (O, 1, L)
    target_obj = obj.repeat_interleave(n_views)
    target_view = torch.arange(1, n_views + 1, device=device).repeat(n_obj)
    cameras, hw = data.cameras(target_obj, target_view), data.images.shape[-2:]
    gt = data.images[target_obj, target_view]  # (O*V, 3, H, W)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    steps = 4 if args.tiny else 25
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"), \
            model.sampling_accelerated(device.type == "cuda"):
        heun = model.novel_views(scene, cameras, hw, sampler="heun", steps=steps, generator=generator)
        euler = model.novel_views(scene, cameras, hw, sampler="euler", steps=2 * steps,
                                  S_churn=model.churn_default, generator=generator)
    outputs = {"field_rgb": heun["field_rgb"].flatten(0, 1), "heun": heun["images"].flatten(0, 1),
               "euler_churn": euler["images"].flatten(0, 1)}
    lpips_reason = lpips_unavailable_reason()
    metrics = {name: image_scores(out.float(), gt, lpips_reason is None) for name, out in outputs.items()}
    metrics["setup"] = {"objects": n_obj, "views_per_object": n_views, "heun_steps": steps,
                        "euler_steps": 2 * steps, "S_churn": model.churn_default, "lpips": lpips_reason or "used"}
    inputs = data.images[target_obj, torch.zeros_like(target_obj)]
    rows = [torch.stack([inputs[i], gt[i], *(outputs[k][i] for k in outputs)]) for i in range(min(6, len(gt)))]
    return {"metrics": metrics, "sheet": compose_sheet([r.float().cpu() for r in rows])}


@torch.no_grad()
def speed(model, data: Views, args, device: torch.device) -> Dict[str, Any]:
    """Seconds of one denoiser step at batch 1 and 16, a 50-step Heun view and a path per view, with
    the U-Net replayed as a CUDA graph on CUDA (``sampling_accelerated``, as generate_samples.py)."""
    model.eval()
    with model.sampling_accelerated(device.type == "cuda"):
        return {**_speed(model, data, args, device), "cuda_graph": device.type == "cuda"}


def _speed(model, data: Views, args, device: torch.device) -> Dict[str, Any]:
    hw = tuple(data.images.shape[-2:])
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")  # noqa: E731
    denoiser = model.edm.denoiser(model.raw_denoiser)
    out: Dict[str, Any] = {}
    for b in (1, 16):
        x = torch.randn(b, 3, *hw, device=device)
        cond = {"latent": torch.randn(b, model.latent_channels, *hw, device=device),
                "drop": torch.zeros(b, device=device)}
        sigma = torch.full((b,), 1.0, device=device)

        def step():
            with autocast():
                denoiser(x, sigma, **cond)
        out[f"denoiser_step_batch{b}_s"] = time_fn(step, device, warmup=2, repeats=3 if args.tiny else 10).median_s
    zero = torch.zeros(1, dtype=torch.long, device=device)
    scene = model.encode(data.images[:1, :1], data.cameras(zero, zero))
    steps = 5 if args.tiny else 50

    def heun_view():
        with autocast():
            model.novel_views(scene, data.cameras(zero, zero + 1), hw, sampler="heun", steps=steps)
    out[f"heun_{steps}_step_view_s"] = time_fn(heun_view, device, warmup=1, repeats=1 if args.tiny else 3).median_s
    n_path, path_steps = (2, 2) if args.tiny else (args.path_views, args.path_steps)
    path_views = torch.arange(1, n_path + 1, device=device) % data.images.shape[1]

    def path():
        with autocast():
            model.generate_path(scene, data.cameras(zero.repeat(n_path), path_views), hw, sampler="heun",
                                steps=path_steps)
    path_s = time_fn(path, device, warmup=0, repeats=1).median_s
    out[f"path_{n_path}_views_heun{path_steps}_s_per_view"] = path_s / n_path
    return out


# ------------------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        args.batch, args.eval_objects, args.eval_views = min(args.batch, 4), 2, 2
        args.minutes = min(args.minutes, 0.1)  # the training part of a smoke run
        torch.set_num_threads(1)  # tiny tensors: more CPU threads only contend
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.max_memory_gib * 2**30 / total), index)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = ensure_data(args, device)
    data = load_data(root, args.category, device)
    model = build_model(args, device)
    print(f"data ready after {time.perf_counter() - start:.0f} s: train {tuple(data['train'].images.shape)}, "
          f"test {tuple(data['test'].images.shape)}; model {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
          f"parameters", flush=True)
    # seconds kept for evaluation and timing (the path: about a second per view at 25 Heun steps)
    reserve = 0.0 if args.tiny else 100.0 + 1.2 * args.path_views * args.path_steps / 25
    deadline = (time.perf_counter() + args.minutes * 60) if args.tiny else start + args.minutes * 60 - reserve
    # the trainer's EMA: warm-up from step 0 (an average that starts from the random init would hold it
    # for thousands of steps)
    ema = EMA(model, decay=args.ema_decay, start_step=0) if args.ema_decay > 0 else None
    training = train(model, data["train"], args, deadline, device, ema)
    print(f"trained {training['steps']} steps, {training['train_images_per_s']} images/s", flush=True)
    live_metrics = evaluate(model, data["test"], args, device)["metrics"] if ema is not None else None
    model = ema.module if ema is not None else model
    evaluation = evaluate(model, data["test"], args, device)
    write_png(out / "contact_sheet.png", evaluation["sheet"])
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "data_root": root, "category": args.category, "image_size": model.image_size,
              "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6, "training": training,
              "evaluated_weights": f"ema (decay {args.ema_decay}, warm-up)" if ema is not None else "live",
              "heldout": evaluation["metrics"], "heldout_live_weights": live_metrics, "speed": speed(model, data["test"], args, device),
              "contact_sheet_columns": ["input", "ground truth", "field RGB", "Heun", "Euler churn"],
              "wall_s": time.perf_counter() - start}
    write_metrics_json(out / "metrics.json", report)
    if args.save_exp:
        print(f"experiment written: {save_experiment(model, args, root, training['steps'])}", flush=True)
    print(json.dumps({k: report[k] for k in ("heldout", "speed")}, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
