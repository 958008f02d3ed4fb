"""The script each torchrun process runs for tests/train/test_ddp_two_nodes.py (gloo, CPU).

Usage: ``ddp_worker.py --out DIR [--extra JSON] JOB ...``, the jobs run in turn in each process:

* ``grads:CASE``: for the case (a tiny config of one system, ``CASES``), one DDP step through
  accelerate exactly as ``HoloTrainingLoop`` wraps the model (DDP with ``find_unused_parameters``),
  stopped after the backward: rank r trains on half r of the first batch of the config's unsharded
  train loader, with every RNG seeded ``SEED + r`` right before its forward. Each rank saves its
  (all-reduced) gradients, the objective and a digest of its initial weights to
  ``DIR/<CASE>_rank<r>.pt``. The test replays both halves in one process (``replay_rank``).
* ``train:NAME:EPOCHS:EXP_DIR``: a real ``Experiment.run`` of the TinyTestModel config (a later job
  on the same EXP_DIR resumes it). Every rank records what its model saw at each forward
  (iteration, frames, digests of the global torch RNG state and of the weights) and every write it
  made under ``exp_dir`` (a Python audit hook) to ``DIR/<NAME>_rank<r>.json``; nothing here writes
  into ``exp_dir`` itself.

The test imports ``CASES``, ``first_batch_parts``, ``replay_rank`` and ``digest`` from here, so the
reference and the DDP run share one definition of the batch and the seeding.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS / "train", TESTS / "models"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

# Registered before Implicitron first expands Experiment (as tests/conftest.py does).
import tiny_components  # noqa: E402,F401
import tiny_image_ddpm  # noqa: E402,F401
import torch  # noqa: E402
from pytorch3d.implicitron.models.renderer.base import EvaluationMode  # noqa: E402

from holo3d.train.config_cli import compose_config  # noqa: E402
from holo3d.train.experiment import Experiment  # noqa: E402
from holo3d.train.rng_state import seed_everything  # noqa: E402

SEED = 42  # Experiment.seed: the rank-r forward is seeded SEED + r, as the loop seeds rank r
_DATA = "data_source_Holo3DDataSource_args"
_LOADER = f"{_DATA}.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args"
_SRN = f"{_DATA}.dataset_map_provider_SrnDatasetMapProvider_args"
_TINY_DATA = ["data_source_class_type=TinyTestDataSource", "training_loop_HoloTrainingLoop_args.logger=none"]

# case -> (config name, overrides). The systems' demo configs on the built-in "tiny" preset (found
# under $HOLO3D_DATA_ROOT, which the test fills before launching); the voxel LDM also needs
# ``autoencoder_exp_dir=`` (a trained voxel_ae_demo experiment), which the test appends.
CASES: Dict[str, Tuple[str, List[str]]] = {
    "holo_diffusion": ("demo", [f"{_DATA}.builtin_preset=tiny"]),
    "tiny_image_ddpm": ("base", [*_TINY_DATA, "model_factory_HoloModelFactory_args.model_class_type=TinyImageDDPM"]),
    "genvs": ("genvs_demo", [f"{_SRN}.builtin_preset=tiny", f"{_LOADER}.scenes_per_batch=2"]),
    "viewfusion": ("viewfusion_demo", [f"{_DATA}.builtin_preset=tiny", f"{_LOADER}.scenes_per_batch=2"]),
    "voxel_ae": ("voxel_ae_demo", ["data_source_VoxelDataSource_args.batch_size=2"]),
    "voxel_ldm": ("voxel_ldm_demo", ["data_source_VoxelDataSource_args.batch_size=2"]),
}


def build_case(case: str, exp_dir: str, extra: Sequence[str] = ()) -> Experiment:
    """The case's Experiment (model and data source built, seeded with SEED as on every rank)."""
    name, overrides = CASES[case]
    cfg = compose_config(name, [f"exp_dir={exp_dir}", f"seed={SEED}", *overrides, *extra])
    return Experiment(**cfg)


def first_batch_parts(experiment: Experiment) -> list:
    """[whole, first half, second half] of the first batch of the unsharded train loader.

    Batches are scene-major (S scenes x N frames) or item-major (voxel grids), so the first half of
    the batch's index list is its first S/2 scenes. Each part is collated on its own.
    """
    loader = experiment.data_source.get_datasets_and_dataloaders()[1].train
    indices = list(next(iter(loader.batch_sampler)))
    if len(indices) % 2:
        raise ValueError(f"{len(indices)} items in the first batch: cannot split it in two equal halves")
    half = len(indices) // 2
    parts = (indices, indices[:half], indices[half:])
    return [loader.collate_fn([loader.dataset[i] for i in part]) for part in parts]


def seeded_forward(model, batch, rank: int, autocast) -> torch.Tensor:
    """The training objective of ``batch`` with every RNG seeded SEED + rank right before."""
    model.train()
    seed_everything(SEED + rank)
    with autocast():
        return model(**batch, evaluation_mode=EvaluationMode.TRAINING, iteration=0)["objective"]


def replay_rank(model, batch, rank: int) -> Dict[str, torch.Tensor]:
    """One process's replay of rank ``rank``'s half: its objective and gradients (no DDP)."""
    import contextlib

    model.zero_grad(set_to_none=True)
    objective = seeded_forward(model, batch, rank, contextlib.nullcontext)
    objective.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return {"objective": objective.detach(), "grads": grads}


def digest(tensors: Dict[str, torch.Tensor]) -> str:
    """sha256 of named tensors (names sorted): equal digests mean bit-identical tensors."""
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        hasher.update(name.encode())
        hasher.update(tensors[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


# ---- grads jobs -----------------------------------------------------------------------------------


def ddp_gradients(case: str, extra: Sequence[str], out: Path) -> None:
    """One DDP step of ``case`` on this rank's half; saves the synchronised gradients to
    ``out/<case>_rank<r>.pt``."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    from holo3d.models.protocol import unwrap

    # The loop's own settings (HoloTrainingLoop.run): DDP with find_unused_parameters, CPU here.
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    rank = accelerator.process_index
    experiment = build_case(case, str(out / f"exp_{case}_rank{rank}"), extra)  # exp_dir: only probed
    model = experiment.model_factory.model.to(accelerator.device)
    initial = digest(model.state_dict())
    batch = first_batch_parts(experiment)[1 + rank].to(accelerator.device)
    model = accelerator.prepare(model)
    objective = seeded_forward(model, batch, rank, accelerator.autocast)
    accelerator.backward(objective)
    grads = {n: p.grad.detach().cpu().clone() for n, p in unwrap(model).named_parameters() if p.grad is not None}
    result = {"objective": objective.detach().cpu(), "grads": grads, "initial_weights": initial,
              "world_size": accelerator.num_processes}
    torch.save(result, out / f"{case}_rank{rank}.pt")
    accelerator.wait_for_everyone()


# ---- train jobs -----------------------------------------------------------------------------------

# The trainer's tiny model on the real multi-scene loader (built-in "tiny" preset): what the loop
# does with the sampler's epochs under DDP is part of what is tested.
TRAIN_OVERRIDES = [
    "model_factory_HoloModelFactory_args.model_class_type=TinyTestModel",
    f"{_DATA}.builtin_preset=tiny",
    "image_size=16",  # the short key: the image height and width of the selected dataset
    f"{_LOADER}.scenes_per_batch=2", f"{_LOADER}.frames_per_scene=2", f"{_LOADER}.dataset_length_train=4",
    f"{_LOADER}.dataset_length_val=1", f"{_LOADER}.num_workers=0", f"{_LOADER}.pin_memory=false",
    "training_loop_HoloTrainingLoop_args.logger=none",
    # LR halves after epoch 1: the checkpoint's LR shows whether epochs are counted per rank
    "optimizer_factory_HoloOptimizerFactory_args.lr=0.05",
    "optimizer_factory_HoloOptimizerFactory_args.lr_policy=multistep",
    "optimizer_factory_HoloOptimizerFactory_args.multistep_milestones=[1]",
    "optimizer_factory_HoloOptimizerFactory_args.gamma=0.5",
    "optimizer_factory_HoloOptimizerFactory_args.warmup_iters=0",
]


class WriteAudit:
    """Every file-system write this process makes under ``root`` (Python audit events), in order."""

    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def __init__(self):
        self.root, self.writes = None, []
        sys.addaudithook(self._hook)  # hooks cannot be removed: one per process, re-aimed per run

    def start(self, root: Path) -> List[list]:
        self.root, self.writes = str(Path(root).resolve()), []
        return self.writes

    def _relative(self, path):
        if self.root is None or not isinstance(path, (str, bytes, os.PathLike)):
            return None
        path = os.path.abspath(os.fsdecode(path))
        inside = path == self.root or path.startswith(self.root + os.sep)
        return os.path.relpath(path, self.root) if inside else None

    def _hook(self, event: str, args: tuple) -> None:
        if event == "open" and self._relative(args[0]) is not None:
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & self._WRITE_FLAGS:
                self.writes.append(["open", self._relative(args[0])])
        elif event in ("os.rename", "os.remove") and self._relative(args[0]) is not None:
            self.writes.append([event, self._relative(args[1] if event == "os.rename" else args[0])])


def record_forwards() -> List[dict]:
    """Makes TinyTestModel record each forward (iteration, frames, RNG and weight digests) in the
    returned list; ``list.clear()`` it between runs."""
    records: List[dict] = []
    original = tiny_components.TinyTestModel.forward

    def forward(self, **kwargs):
        records.append({
            "iteration": kwargs.get("iteration"),
            "frames": [f"{s}/{int(f)}" for s, f in zip(kwargs["sequence_name"], kwargs["frame_number"])],
            "rng": digest({"torch": torch.get_rng_state()}),  # what the model's draws come from
            "weights": digest(self.state_dict()),
        })
        return original(self, **kwargs)

    tiny_components.TinyTestModel.forward = forward
    return records


def recorded_run(name: str, epochs: int, exp_dir: str, out: Path, audit: WriteAudit, records: List[dict]) -> None:
    """A real Experiment.run of ``epochs`` epochs in ``exp_dir``, recorded to ``out/<name>_rank<r>.json``."""
    rank = int(os.environ["RANK"])
    cfg = compose_config("base", [*TRAIN_OVERRIDES, f"seed={SEED}", f"exp_dir={exp_dir}",
                                  f"training_loop_HoloTrainingLoop_args.max_epochs={epochs}"])
    writes = audit.start(Path(exp_dir))
    records.clear()
    experiment = Experiment(**cfg)
    built = digest(experiment.model_factory.model.state_dict())  # before DDP's broadcast
    experiment.run(cfg)
    audit.start(out / "nothing")  # stop auditing exp_dir: the report goes elsewhere
    report = {"rank": rank, "built_weights": built, "forwards": list(records), "writes": writes}
    (out / f"{name}_rank{rank}.json").write_text(json.dumps(report, indent=1))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the results (<case>_rank<r>.pt, <run>_rank<r>.json)")
    parser.add_argument("--extra", type=json.loads, default={}, help='more overrides: JSON {"case": ["key=value"]}')
    parser.add_argument("jobs", nargs="+", help=f"grads:CASE (CASE in {sorted(CASES)}) or train:NAME:EPOCHS:EXP_DIR")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Runs the jobs in turn, in one process per rank (a launch costs ~15 s of start-up on 2 cores)."""
    from accelerate.state import AcceleratorState

    torch.set_num_threads(1)
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    audit, records = WriteAudit(), record_forwards()
    for job in args.jobs:
        kind, _, rest = job.partition(":")
        if kind == "grads":
            ddp_gradients(rest, args.extra.get(rest, []), out)
        elif kind == "train":
            name, epochs, exp_dir = rest.split(":", 2)
            recorded_run(name, int(epochs), exp_dir, out, audit, records)
        else:
            raise SystemExit(f"ddp_worker: unknown job {job!r}; use grads:CASE or train:NAME:EPOCHS:EXP_DIR")
        AcceleratorState._reset_state()  # the next job builds its own Accelerator, as a new process would


if __name__ == "__main__":
    main()
