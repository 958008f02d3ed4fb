"""python -m holo3d.bench: the performance figures of holo3d, one JSON line each on stdout.

    python -m holo3d.bench                                  # every figure, base config, on the GPU
    python -m holo3d.bench --cpu                            # tiny config on CPU (CI: does it run?)
    python -m holo3d.bench --only train,unet --scenes 1,4,8 --precisions bf16 --out bench.jsonl
    python -m holo3d.bench --only unet,sample --channels-last --compile --cuda-graph
    python -m holo3d.bench --profile train --scenes 4 --precisions bf16 --profile-dir prof/

--model picks the system (default holo: HoloDiffusion, the figures below). The other systems --
genvs, viewfusion, voxel_ldm, distill -- have two figures, system.train (training step, items/s,
peak memory, FLOPs and MFU) and system.sample, built from their configs (holo3d/bench/systems.py):

    python -m holo3d.bench --model genvs                    # configs/genvs_srn_cars.yaml on the GPU
    python -m holo3d.bench --model voxel_ldm --scenes 8,32 --only train --peak-tflops 989.4
    python -m holo3d.bench --model distill --cpu            # tiny variant on CPU

For them --scenes is the items per step (scenes; voxel_ldm: grids; distill: rendered views per
iteration) and --sample-n / --sample-steps the sampler call; flags of HoloDiffusion's figures
(--bootstrap, --chunks, --e2e-*, --profile ...) are refused.

Families (holo): numerics, train, unet, sample, render, e2e (see holo3d/bench/__init__.py). Progress
and errors go to stderr; the exit status is 1 if a figure failed or a numerics check is out of
tolerance. Set HOLO3D_COMMIT to record the commit where the tree has no .git.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional, Tuple

import torch

from holo3d.bench.report import Reporter
from holo3d.bench.runner import run
from holo3d.train.step import COMPILE_MODES
from holo3d.bench.settings import ALL_FIGURES, BenchSettings, base_settings, tiny_cpu_settings

MODELS = ("holo", "genvs", "viewfusion", "voxel_ldm", "distill")
# Flags of HoloDiffusion's figures only (argparse dests; None when not given).
HOLO_ONLY = ("bootstrap", "image_size", "clip_grad_norm", "ema_decay", "step_sync", "compile_step",
             "compile_step_mode", "model_args", "model_finite_check", "unet_batches", "channels_last", "compile",
             "compile_mode", "cuda_graph", "chunks", "render_views", "render_size", "e2e_dir", "e2e_samplers",
             "e2e_extra", "profile")
SYSTEM_ONLY = ("peak_tflops", "sample_steps", "config_args")


def _ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v]


def _chunks(text: str) -> List[int]:
    # "full" (or 0): every ray of the call in one pass
    return [0 if v in ("full", "0") else int(v) for v in text.split(",") if v]


def _names(allowed: Tuple[str, ...]):
    def parse(text: str) -> List[str]:
        names = [v for v in text.split(",") if v]
        unknown = [v for v in names if v not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; expected some of {list(allowed)}")
        return names
    return parse


def _on_off(text: str) -> List[bool]:
    return [{"on": True, "off": False}[v] for v in _names(("off", "on"))(text)]


def _samplers(text: str) -> List[Tuple[str, int]]:
    pairs = [item.split(":") for item in text.split(",") if item]
    return [(name, int(steps)) for name, steps in pairs]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m holo3d.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="tiny config on CPU (CI mode)")
    p.add_argument("--device", help="override the device (default cuda; cpu with --cpu)")
    p.add_argument("--model", choices=MODELS, default="holo",
                   help="system to measure: holo (HoloDiffusion, default) or genvs, viewfusion, voxel_ldm, distill")
    p.add_argument("--only", type=_names(ALL_FIGURES),
                   help=f"comma list of {','.join(ALL_FIGURES)} (other --model: train,sample)")
    p.add_argument("--out", help="also append the JSON lines to this file")
    p.add_argument("--seed", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--tf32", choices=("on", "off", "default"), default="on",
                   help="TF32 for fp32 matmuls/convs: on (the training loop's allow_tf32 default), "
                        "off, or PyTorch's default (cuDNN only)")
    p.add_argument("--threads", type=int, help="torch CPU threads (the CPU mode uses 1)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="cuDNN autotuning")
    _add_training_step_args(p)
    _add_figure_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    return p


def _add_training_step_args(p: argparse.ArgumentParser) -> None:
    """The training-step figure's switches (figure 1 and every --model's train figure)."""
    g = p.add_argument_group("training step")
    g.add_argument("--scenes", type=_ints, help="scenes per step, e.g. 1,4,8")
    g.add_argument("--precisions", type=_names(("fp32", "bf16")), help="fp32,bf16")
    g.add_argument("--bootstrap", type=_on_off, help="off,on")
    g.add_argument("--image-size", type=int, help="side of the synthetic frames (800)")
    g.add_argument("--clip-grad-norm", type=float, help="as configs/base.yaml: 1.0 (0: off)")
    g.add_argument("--ema-decay", type=float, help="as configs/base.yaml: 0.999 (0: no EMA)")
    g.add_argument("--step-sync", type=_names(("free", "every")),
                   help="free (the loop's sync_free_step, default), every (one host sync per step); e.g. free,every")
    g.add_argument("--compile-step", action="store_true", default=None,
                   help="training forward under torch.compile, as the loop's compile_model")
    g.add_argument("--compile-step-mode", choices=COMPILE_MODES,
                   help="torch.compile mode of --compile-step, as the loop's compile_mode (default)")
    g.add_argument("--model-arg", action="append", dest="model_args", metavar="KEY=VALUE",
                   help="HoloDiffusionModel setting over the bench's (YAML value), e.g. "
                        "lifter_args.checkpoint_backbone=true; repeatable")
    g.add_argument("--no-model-finite-check", dest="model_finite_check", action="store_const", const=False,
                   help="HoloDiffusionModel.check_finite=false (drops the model's own host sync)")


def _add_figure_args(p: argparse.ArgumentParser) -> None:
    """The U-Net, sampling, rendering, end-to-end, other-system and profiling switches."""
    g = p.add_argument_group("U-Net step and sampling")
    g.add_argument("--unet-batches", type=_ints, help="e.g. 1,15")
    g.add_argument("--sample-n", type=int, help="grids per model.sample call (15)")
    g.add_argument("--sample-repeats", type=int)
    g.add_argument("--channels-last", action="store_true", default=None, help="+ channels_last_3d variant")
    g.add_argument("--compile", action="store_true", default=None, help="+ torch.compile variant")
    g.add_argument("--compile-mode", help="torch.compile mode (default, reduce-overhead, max-autotune)")
    g.add_argument("--cuda-graph", action="store_true", default=None, help="+ CUDA-graph variant")
    g = p.add_argument_group("rendering")
    g.add_argument("--chunks", type=_chunks, help="rays per pass, e.g. 4096,65536,262144,full")
    g.add_argument("--render-views", type=_ints, help="frames per render call, e.g. 1,75")
    g.add_argument("--render-size", type=int)
    g = p.add_argument_group("end to end (generate_samples.py)")
    g.add_argument("--e2e-dir", help="experiment folder to create (default: a new temporary one)")
    g.add_argument("--e2e-samplers", type=_samplers, help="e.g. ddpm:1000,ddim:50")
    g.add_argument("--e2e-arg", action="append", dest="e2e_extra", help="extra KEY=VALUE for the script")
    g = p.add_argument_group("other systems (--model genvs, viewfusion, voxel_ldm, distill)")
    g.add_argument("--sample-steps", type=int, help="sampler steps (default: the config's; 2 with --cpu)")
    g.add_argument("--peak-tflops", type=float, help="peak TFLOP/s for the MFU (default: table by GPU name)")
    g.add_argument("--config-arg", action="append", dest="config_args", metavar="KEY=VALUE",
                   help="dotted key of the system's config (YAML value), e.g. to match another code's model "
                        "size: model_factory_HoloModelFactory_args.model_GenvsModel_args.unet_args.model_channels=128;"
                        " repeatable")
    g = p.add_argument_group("profiling")
    g.add_argument("--profile", help="train,unet,sample,render: profile these instead of timing")
    g.add_argument("--profile-dir", default="bench_profiles")
    g.add_argument("--trace", action="store_true", help="also write Chrome traces")


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    settings = tiny_cpu_settings() if args.cpu else base_settings()
    chosen = dict(
        seed=args.seed, warmup=args.warmup, repeats=args.repeats, scenes=args.scenes,
        precisions=args.precisions, bootstrap=args.bootstrap, image_size=args.image_size,
        clip_grad_norm=args.clip_grad_norm, ema_decay=args.ema_decay, step_sync=args.step_sync,
        compile_step=args.compile_step, compile_step_mode=args.compile_step_mode,
        model_finite_check=args.model_finite_check,
        unet_batches=args.unet_batches, sample_n=args.sample_n, sample_repeats=args.sample_repeats,
        channels_last=args.channels_last, compile=args.compile, compile_mode=args.compile_mode,
        cuda_graph=args.cuda_graph, chunk_sizes=args.chunks, render_views=args.render_views,
        render_size=args.render_size, e2e_dir=args.e2e_dir, e2e_samplers=args.e2e_samplers,
        e2e_extra=args.e2e_extra, device=args.device, threads=args.threads,
        cudnn_benchmark=args.cudnn_benchmark or None,
    )
    settings = settings.with_overrides(**chosen)
    settings.model.update(_model_args(args.model_args or []))
    settings.tf32 = {"on": True, "off": False, "default": None}[args.tf32]
    return settings


def _model_args(items, flag: str = "--model-arg") -> dict:
    """["key=value", ...] -> {key: YAML-parsed value}; a token without "=" is refused, named."""
    import yaml

    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} {item!r}: expected KEY=VALUE")
        parsed[key] = yaml.safe_load(value)
    return parsed


def check_model_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses flags that the chosen --model does not use (exit status 2, naming them)."""
    foreign = SYSTEM_ONLY if args.model == "holo" else HOLO_ONLY
    flags = {action.dest: action.option_strings[-1] for action in parser._actions if action.option_strings}
    given = [flags.get(name, name) for name in foreign if getattr(args, name, None) is not None]
    if given:
        parser.error(f"{', '.join(given)} not used with --model {args.model}")
    if args.model != "holo" and args.only and not set(args.only) <= {"train", "sample"}:
        parser.error(f"--model {args.model} has the figures train,sample; got --only {','.join(args.only)}")


def system_settings_from_args(args: argparse.Namespace):
    """The SystemSettings of a --model other than holo."""
    from holo3d.bench.systems import system_settings

    settings = system_settings(
        args.model, args.cpu, device=args.device, seed=args.seed, warmup=args.warmup, repeats=args.repeats,
        figures=tuple(args.only) if args.only else None, batch=args.scenes, precisions=args.precisions,
        sample_n=args.sample_n, sample_steps=args.sample_steps, sample_repeats=args.sample_repeats,
        peak_tflops=args.peak_tflops, threads=args.threads, cudnn_benchmark=args.cudnn_benchmark or None,
        config_overrides=_model_args(args.config_args or [], "--config-arg") or None)
    settings.tf32 = {"on": True, "off": False, "default": None}[args.tf32]
    if settings.config_overrides:  # a key the config lacks is refused before any model is built
        from holo3d.bench.systems import system_config

        try:
            system_config(args.model, args.cpu, settings.config_overrides)
        except KeyError as error:
            raise SystemExit(error.args[0]) from None
    return settings


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_model_flags(parser, args)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args) if args.model == "holo" else system_settings_from_args(args)
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("holo3d.bench: no CUDA device here; run with --cpu (tiny CI mode) or --device cpu",
              file=sys.stderr)
        return 2
    reporter = Reporter(device, args.out)
    if args.model != "holo":
        from holo3d.bench.systems import run as run_system

        return run_system(settings, reporter)
    return run(settings, reporter, args.only or list(ALL_FIGURES), args.profile or "", args.profile_dir, args.trace)


if __name__ == "__main__":
    sys.exit(main())
