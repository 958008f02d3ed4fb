"""TrainingLoop: run -> epoch -> step, validation, checkpoints and monitoring, on accelerate.

One code path serves CPU, one GPU and many GPUs (``accelerate launch`` or ``torchrun``): accelerate
wraps the model in DDP and shards the batch sampler, rank 0 alone writes checkpoints and logs.

Resume is exact from any stop, at an epoch boundary or in the middle of an epoch: the checkpoint
holds every RNG state, and each epoch's data-loader iterator is created under a seed that depends
only on (seed, epoch, rank) (see ``_epoch_batches``). A stop by SIGTERM / SIGINT writes a
checkpoint and exits with status 128 + signal number (143 / 130), so schedulers and scripts see
that the run did not finish.
"""


import itertools
import logging
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from pytorch3d.implicitron.models.renderer.base import EvaluationMode
from pytorch3d.implicitron.tools.config import ReplaceableBase, registry
from tqdm import tqdm

from holo3d.data.robust_dataset import check_dataset_files, log_unreadable_frames
from holo3d.models.protocol import unwrap
from holo3d.train.checkpoint import check_state_dict_compatible, remove_stale_temporaries, save_checkpoint
from holo3d.train.ema import EMA
from holo3d.train.monitor import TrainingMonitor
from holo3d.train.rng_state import capture_rng_state, restore_rng_state, seed_everything
from holo3d.train.stats import (RunningStats, StepRecord, format_stats, gpu_memory_gib, read_records,
                                scalar_values)
from holo3d.train.step import COMPILE_MODES, NonFiniteStep, compiled_training_forward, optimization_step, sync_free_step

logger = logging.getLogger(__name__)


_PROGRESS_KEYS = ("objective", "psnr", "sec_per_it", "lr")


class NonFiniteLossError(FloatingPointError):
    """Training produced non-finite losses too many steps in a row."""


class StoppedBySignal(SystemExit):
    """Training stopped on SIGTERM / SIGINT after writing a checkpoint; the exit status is
    128 + the signal number (143 / 130), as a process killed by that signal would report."""

    def __init__(self, signum: int, message: str):
        super().__init__(128 + signum)
        self.signum, self.message = signum, message


@dataclass
class LoopPosition:
    """Where the loop is: completed epochs, batches done in the current epoch, total batches."""

    epoch: int = 0
    batch_in_epoch: int = 0
    iteration: int = 0


class TrainingLoopBase(ReplaceableBase):
    def run(self, *, data_source, model_factory, optimizer_factory, exp_dir: str, seed: int,
            config_yaml: str) -> Dict[str, float]:
        raise NotImplementedError()


@registry.register
class HoloTrainingLoop(TrainingLoopBase):
    """
    Members:
        max_epochs: epochs to train (an epoch is the data loader's dataset_length_train batches).
        mixed_precision: "no" or "bf16" (autocast; weights and optimizer stay fp32).
        clip_grad_norm: clip the global gradient norm to this (0: off).
        gradient_accumulation_steps: batches per optimizer step.
        ema_decay: EMA of weights (0: off); the EMA is used for validation and sampling.
        ema_start_iteration / ema_warmup: the EMA tracks the weights until this iteration, then
            averages with min(ema_decay, (1 + n) / (10 + n)) at its n-th update (warm-up; false: with
            ema_decay from the first update, which keeps ema_decay ** n of the start's weights).
        max_nonfinite_steps: stop with an error after this many non-finite losses in a row.
        sync_free_step: no host sync inside a training step: the logged scalars stay on the device
            and are read every log_interval steps (and at the end of an epoch), and a non-finite
            step is skipped on the device (holo3d/train/step.py says what differs: such a step still
            advances the LR schedule, and is reported when read). false: read them every step and
            skip non-finite steps before backward. A model's own finiteness check (HoloDiffusion's
            check_finite) keeps its sync either way.
        compile_model: run the training forward under torch.compile (static shapes; compiles at the
            first steps; the compiled call gets no iteration, which would recompile every step);
            validation, EMA, checkpoints and sampling use the model as it is.
        compile_mode: torch.compile's mode for compile_model ("reduce-overhead" replays the compiled
            forward and backward as CUDA graphs).
        checkpoint_interval_epochs / keep_last_checkpoints: checkpoint cadence and retention.
        validation_interval_epochs / n_validation_batches: validation cadence and size.
        log_interval / visualize_interval: iterations between scalar logs / image panels.
        sample_video_interval_epochs: epochs between short sample videos (diffusion models; 0: off).
        generation_eval_interval_epochs: epochs between generation-quality evaluations on rank 0
            (COV / MMD / 1-NNA vs held-out ground truth, appearance spread; 0: off); only for
            generative radiance-field models on data with ground-truth shapes (else skipped, logged).
        generation_eval_samples / generation_eval_sampler / generation_eval_steps: its samples
            (>= 2), sampler name and steps.
        logger: visdom | tensorboard | none.
        allow_tf32: let float32 matmuls/convolutions use TF32 on GPUs (about 2.5x faster renders
            on Hopper at ~1e-3 relative precision; measured in BENCHMARKS.md).
    """

    max_epochs: int = 100
    mixed_precision: str = "no"
    clip_grad_norm: float = 0.0
    gradient_accumulation_steps: int = 1
    ema_decay: float = 0.0
    ema_start_iteration: int = 0
    ema_warmup: bool = True
    max_nonfinite_steps: int = 10
    sync_free_step: bool = True
    compile_model: bool = False
    compile_mode: str = "default"
    checkpoint_interval_epochs: int = 1
    keep_last_checkpoints: int = 3
    validation_interval_epochs: int = 1
    n_validation_batches: int = 4
    log_interval: int = 10
    visualize_interval: int = 200
    sample_video_interval_epochs: int = 0
    generation_eval_interval_epochs: int = 0
    generation_eval_samples: int = 8
    generation_eval_sampler: str = "ddim"
    generation_eval_steps: int = 20
    logger: str = "visdom"
    allow_tf32: bool = True
    visdom_server: str = "http://127.0.0.1"
    visdom_port: int = 8097

    def __post_init__(self):
        if self.max_epochs < 0:
            raise ValueError(f"training_loop.max_epochs={self.max_epochs}; it must be >= 1 (0 only builds the model)")
        if self.mixed_precision not in ("no", "bf16"):
            raise ValueError(f"training_loop.mixed_precision={self.mixed_precision!r}; use 'no' or 'bf16'")
        if self.gradient_accumulation_steps < 1:
            raise ValueError("training_loop.gradient_accumulation_steps must be >= 1")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"training_loop.compile_mode={self.compile_mode!r}; expected one of {list(COMPILE_MODES)}")
        if self.log_interval < 1:
            raise ValueError(f"training_loop.log_interval={self.log_interval}; it must be >= 1")

    def run(self, *, data_source, model_factory, optimizer_factory, exp_dir, seed, config_yaml):
        accelerator = Accelerator(
            mixed_precision=self.mixed_precision,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            cpu=not torch.cuda.is_available(),
            # Models may leave some parameters unused in a step (e.g. the U-Net in baselines).
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        torch.backends.cuda.matmul.allow_tf32 = self.allow_tf32
        torch.backends.cudnn.allow_tf32 = self.allow_tf32
        seed_everything(seed + accelerator.process_index)
        if accelerator.is_main_process:
            remove_stale_temporaries(exp_dir)
        datasets, loaders = data_source.get_datasets_and_dataloaders()
        check_dataset_files(datasets)
        model = model_factory(exp_dir).to(accelerator.device)
        resume = model_factory.resume_state(exp_dir)
        train_loader = loaders.train
        if accelerator.num_processes > 1:
            train_loader = accelerator.prepare_data_loader(train_loader, device_placement=False)
        # len(train_loader): the batches each rank takes per epoch (the sharded loader's length), so
        # schedules given in epochs count the steps each rank really makes.
        optimizer, scheduler = optimizer_factory(model, len(train_loader), self.max_epochs)
        ema = EMA(model, self.ema_decay, self.ema_start_iteration, self.ema_warmup) if self.ema_decay > 0 else None
        position = self._restore(resume, model, ema, optimizer, scheduler, accelerator, seed)
        model, optimizer = accelerator.prepare(model, optimizer)
        monitor = TrainingMonitor.create(self, exp_dir, accelerator.is_main_process, data_source)
        session = _Session(self, accelerator, model, ema, optimizer, scheduler, monitor, exp_dir,
                           config_yaml, seed)
        if self.compile_model:
            session.forward = compiled_training_forward(model, self.compile_mode)
        _say_if_nothing_to_do(self.max_epochs, position)
        try:
            with log_unreadable_frames():
                return session.train(train_loader, loaders.val, position)
        finally:
            monitor.close()

    def _restore(self, state, model, ema, optimizer, scheduler, accelerator, seed: int) -> LoopPosition:
        if state is None:
            return LoopPosition()
        check_state_dict_compatible(state["model"], model.state_dict(), source=state["path"])
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state.get("ema") or state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_rank_rng(state, accelerator.process_index, accelerator.num_processes, seed)
        logger.info("resumed from %s (epoch %d, iteration %d)", state["path"], state["epoch"],
                    state["iteration"])
        return LoopPosition(state["epoch"], state.get("batch_in_epoch", 0), state["iteration"])


class _Session:
    """The state of one training run; methods are the loop's steps."""

    def __init__(self, cfg, accelerator, model, ema, optimizer, scheduler, monitor, exp_dir,
                 config_yaml, seed: int):
        self.cfg, self.accelerator, self.model, self.ema = cfg, accelerator, model, ema
        self.optimizer, self.scheduler, self.monitor = optimizer, scheduler, monitor
        self.exp_dir, self.config_yaml, self.seed = exp_dir, config_yaml, seed
        self.nonfinite_in_a_row = 0
        self.stop_requested = False
        self.stop_signal = signal.SIGTERM
        self.forward = None  # the compiled training forward (compile_model), else model(**batch)
        self.stats, self.pending, self.progress = RunningStats(), [], None  # the epoch's

    # ---- run -> epoch -> step ----

    def train(self, train_loader, val_loader, position: LoopPosition) -> Dict[str, float]:
        means: Dict[str, float] = {}
        with _StopSignals(self):
            while position.epoch < self.cfg.max_epochs and not self.stop_requested:
                means = self.epoch(train_loader, position)
                if self.stop_requested:
                    break
                position.epoch, position.batch_in_epoch = position.epoch + 1, 0
                self.end_of_epoch(val_loader, position)
        if self.stop_requested:
            self.stopped(position)
        return means

    def stopped(self, position: LoopPosition) -> None:
        """Writes the stop checkpoint and raises StoppedBySignal (the process exits 143 / 130)."""
        path = self.checkpoint(position)
        name = signal.Signals(self.stop_signal).name
        message = (f"stopped by signal {name} at epoch {position.epoch}, iteration {position.iteration}; "
                   f"checkpoint {path} written. Resume with the same command.")
        logger.warning(message)
        if self.accelerator.is_main_process:
            print(f"holo3d: {message}", file=sys.stderr, flush=True)
        raise StoppedBySignal(self.stop_signal, message)

    def epoch(self, loader, position: LoopPosition) -> Dict[str, float]:
        _set_epoch(loader, position.epoch)
        self.stats, self.pending = RunningStats(), []
        batches = _epoch_batches(loader, position.batch_in_epoch,
                                 (self.seed, position.epoch, self.accelerator.process_index))
        self.progress = tqdm(batches, total=len(loader) - position.batch_in_epoch, leave=False,
                             desc=f"epoch {position.epoch}", disable=not self.accelerator.is_main_process)
        tic = time.perf_counter()
        for batch in self.progress:
            batch = batch.to(self.accelerator.device)
            record = self.step(batch, position)
            position.batch_in_epoch += 1
            position.iteration += 1
            if record is not None:
                # Without host syncs this is the step's host time; its mean over an epoch is exact.
                record.host["sec_per_it"] = time.perf_counter() - tic
                record.extras.update(lr=self.scheduler.get_last_lr()[0],
                                     gpu_memory_gib=gpu_memory_gib(self.accelerator.device))
                self.pending.append(record)
                if not self.cfg.sync_free_step or position.iteration % self.cfg.log_interval == 0:
                    self.read_pending()
                self.after_step(position, batch)
            tic = time.perf_counter()
            if self.stop_requested:
                break
        self.read_pending()
        means = self.stats.means()
        logger.info("epoch %d train: %s", position.epoch, format_stats(means, ("objective", "psnr")))
        return means

    def step(self, batch, position: LoopPosition) -> Optional[StepRecord]:
        """One forward/backward and update; None when the step was skipped on the host as
        non-finite (a sync-free step's record says later whether it was)."""
        step = sync_free_step if self.cfg.sync_free_step else optimization_step
        try:
            out = step(self.model, batch, accelerator=self.accelerator, optimizer=self.optimizer,
                       scheduler=self.scheduler, ema=self.ema, clip_grad_norm=self.cfg.clip_grad_norm,
                       iteration=position.iteration, forward=self.forward)
        except NonFiniteStep as error:
            self.read_pending()  # the steps before it come first in the count of those in a row
            self.skip_nonfinite(error.bad, position.iteration)
            return None
        return out if isinstance(out, StepRecord) else StepRecord.from_host(position.iteration, out)

    def read_pending(self) -> None:
        """Reads the pending step records (one host sync for all) and takes them in order:
        non-finite steps are counted and reported, the others averaged and logged."""
        records, self.pending = self.pending, []
        if not records:
            return
        for record, (values, grad_norm) in zip(records, read_records(records)):
            bad = {k: v for k, v in values.items() if not _is_finite(v)}
            if not _is_finite(grad_norm):
                bad["gradient_norm"] = grad_norm
            if bad:
                self.skip_nonfinite(bad, record.iteration)
                continue
            self.nonfinite_in_a_row = 0
            self.stats.update(values)
            self.log_step(record.iteration + 1, {**values, **record.extras})

    def skip_nonfinite(self, bad: Dict[str, Any], iteration: int) -> None:
        """Counts a skipped step (no update was made); ``bad`` names what was non-finite."""
        self.nonfinite_in_a_row += 1
        logger.warning("iteration %d: non-finite %s; step skipped (%d in a row)",
                       iteration, bad, self.nonfinite_in_a_row)
        if self.nonfinite_in_a_row >= self.cfg.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"{self.nonfinite_in_a_row} non-finite losses in a row (last at iteration "
                f"{iteration}: {bad}); stopping. Lower the learning rate or enable "
                "training_loop.clip_grad_norm."
            )

    def log_step(self, iteration: int, values: Dict[str, float]) -> None:
        """Shows and logs the values of a step that ends ``iteration`` iterations, at the log cadence."""
        if iteration % self.cfg.log_interval == 0:
            shown = {k: values[k] for k in _PROGRESS_KEYS if k in values}
            self.progress.set_postfix_str(format_stats(shown, _PROGRESS_KEYS))
            self.monitor.scalars(iteration, values, "train")

    def after_step(self, position: LoopPosition, batch) -> None:
        if self.cfg.visualize_interval > 0 and position.iteration % self.cfg.visualize_interval == 0:
            self.monitor.panels(position.iteration, self.eval_model(), batch)

    # ---- end of epoch: validation, sample video, checkpoint ----

    def end_of_epoch(self, val_loader, position: LoopPosition) -> None:
        cfg = self.cfg
        if val_loader is not None and _due(position.epoch, cfg.validation_interval_epochs):
            self.validate(val_loader, position)
        if _due(position.epoch, cfg.sample_video_interval_epochs):
            self.monitor.sample_video(position.iteration, self.eval_model())
        if _due(position.epoch, cfg.generation_eval_interval_epochs):
            self.monitor.generation_quality(position.iteration, self.eval_model())
        if _due(position.epoch, cfg.checkpoint_interval_epochs) or position.epoch == cfg.max_epochs:
            self.checkpoint(position)

    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.accelerator.unwrap_model(self.model)

    @torch.no_grad()
    def validate(self, loader, position: LoopPosition) -> Dict[str, float]:
        model = self.eval_model().eval()
        stats = RunningStats()
        for batch in itertools.islice(loader, self.cfg.n_validation_batches):
            with self.accelerator.autocast():
                preds = model(**batch.to(self.accelerator.device),
                              evaluation_mode=EvaluationMode.EVALUATION)
            stats.update(scalar_values(preds, unwrap(model).log_vars))
        means = stats.means()
        logger.info("epoch %d val: %s", position.epoch, format_stats(means, ("objective", "psnr")))
        self.monitor.scalars(position.iteration, means, "val")
        return means

    def checkpoint(self, position: LoopPosition) -> Optional[str]:
        """Writes the checkpoint of ``position`` (main process); returns its path."""
        self.accelerator.wait_for_everyone()
        rng_by_rank = _gather_rng_states(self.accelerator)  # every rank takes part
        if not self.accelerator.is_main_process:
            return None
        state = {
            "model": self.accelerator.unwrap_model(self.model).state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_by_rank[0],
            "rng_by_rank": rng_by_rank,
            "epoch": position.epoch,
            "batch_in_epoch": position.batch_in_epoch,
            "iteration": position.iteration,
            "config": self.config_yaml,
        }
        path = save_checkpoint(self.exp_dir, position.epoch, state, self.cfg.keep_last_checkpoints)
        logger.info("checkpoint %s", path)
        return str(path)


class _StopSignals:
    """SIGTERM/SIGINT ask the loop to stop after the current step and write a checkpoint."""

    def __init__(self, session: _Session):
        self.session = session
        self.previous: Dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be handled here
                pass
        return self

    def _handle(self, signum, frame):
        logger.warning("received signal %d: stopping after this step", signum)
        self.session.stop_requested = True
        self.session.stop_signal = signum
        signal.signal(signum, self.previous.get(signum, signal.SIG_DFL))  # a second one kills

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _epoch_batches(loader, skip: int, seed_keys):
    """The epoch's batches from index ``skip`` on, made independent of the global RNG stream.

    ``iter(loader)`` draws the workers' base seed from the global torch RNG. A run resumed in the
    middle of an epoch restores the RNG as it was *after* that draw, so drawing again would shift
    every later random number and give workers other seeds: resume would not be exact. So the
    iterator is created under a seed of (seed, epoch, rank) alone, together with the first batch
    (lazy wrappers such as accelerate's draw at the first ``next``) and the ``skip`` batches a
    resumed run has already trained on (loaded again, so workers consume their RNG as the
    uninterrupted run did), and the global RNG states are then put back as they were.
    """
    saved = capture_rng_state()
    seed_everything(int(np.random.SeedSequence([int(k) for k in seed_keys]).generate_state(1)[0]))
    iterator = iter(loader)
    head = list(itertools.islice(iterator, max(skip, 1)))
    restore_rng_state(saved)
    return itertools.chain(head, iterator) if skip == 0 else iterator


def _set_epoch(loader, epoch: int) -> None:
    """Tells the loader's sampler which epoch this is. accelerate's sharded loader (N > 1 processes)
    sets its sampler's epoch from its own pass counter at every ``iter()``, a counter that restarts
    at 0 in a resumed run; its ``set_epoch`` moves that counter too."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
        return
    sampler = getattr(loader, "batch_sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def _gather_rng_states(accelerator) -> list:
    """Every rank's RNG states, in rank order (rank r draws its own noise and must resume it)."""
    state = capture_rng_state()
    if accelerator.num_processes == 1:
        return [state]
    from accelerate.utils import gather_object

    return gather_object([state])


def _restore_rank_rng(state: Dict[str, Any], rank: int, world_size: int, seed: int) -> None:
    """Restores this rank's RNG states. A checkpoint written by another number of processes (or by
    an older version, with rank 0's states only) gives rank 0 its states and every other rank a
    fresh seed of (seed, iteration, rank), so that ranks never draw the same noise."""
    by_rank = state.get("rng_by_rank") or [state["rng"]]
    if len(by_rank) == world_size:
        restore_rng_state(by_rank[rank])
        return
    restore_rng_state(by_rank[0])
    if rank > 0:
        keys = [seed, state["iteration"], rank]
        seed_everything(int(np.random.SeedSequence(keys).generate_state(1)[0]))


def _say_if_nothing_to_do(max_epochs: int, position: LoopPosition) -> None:
    if max_epochs == 0:
        logger.warning("training_loop.max_epochs=0: nothing to train (the model is only built); "
                       "set max_epochs >= 1 to train")
    elif position.epoch >= max_epochs:
        logger.warning("this experiment has already trained %d epochs (training_loop.max_epochs=%d): "
                       "nothing to do; raise max_epochs to train further", position.epoch, max_epochs)


def _is_finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def _due(epoch: int, interval: int) -> bool:
    return interval > 0 and epoch % interval == 0
