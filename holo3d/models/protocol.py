"""The model protocol: what the trainer, sample/, eval/ and the training monitor may call on a model.

Every model is a registered Implicitron ``ImplicitronModelBase`` (so the trainer can build, train,
checkpoint and resume it) and declares what else it can do by inheriting the mixins below. Consumers
test ``isinstance(model, GenerativeModel)`` and call only the methods and properties declared here:
no attribute probing, no guessed defaults.

    Trainable   forward(**batch, evaluation_mode, iteration) -> {"objective", *log_vars}; log_vars;
                min_frames_per_scene; compile_target()
    Renderable  output_kind, scene_extent, render_chunk_size, render_samples(...)
    Generative  can_sample, sample(...), conditions(...), sampling_accelerated(...), preview_frames(...)
    Reconstruct input_fg_threshold, background, max_denoise_from_t, reconstruct_from_views(...)
    Field       query_field(...) (radiance grids: meshes, occupancy for 3D metrics)

Samples are whatever the model generates: feature grids (B, F, D, H, W) for radiance-grid models,
images (B, 3, H, W) for image models, occupancy logits or probabilities (B, 1, R, R, R) for voxel
models. ``render_samples`` turns any of them into frames, so sample/ writes videos and contact
sheets for every model with the same code.
"""

from __future__ import annotations

import contextlib
from enum import Enum
from typing import Any, Callable, ContextManager, Dict, Optional, Sequence, Tuple

import torch
from pytorch3d.renderer.cameras import CamerasBase

# Default few-step sampler of previews and scripts (every model's sampler registry has it).
PREVIEW_SAMPLER = "ddim"


class OutputKind(str, Enum):
    """What a model's samples are."""

    RADIANCE_GRID = "radiance_grid"  # (B, F, D, H, W) feature grids decoded by a radiance field
    IMAGES = "images"  # (B, 3, H, W) images in [0, 1]
    VOXELS = "voxels"  # (B, 1, R, R, R) occupancy probabilities in [0, 1]


class TrainableModel:
    """What the trainer relies on beyond ``ImplicitronModelBase``'s forward contract.

    ``forward(**batch, evaluation_mode, iteration) -> dict`` with ``objective`` (0-d tensor to
    minimise) and every key named in ``log_vars`` (0-d tensors); a batch is a collated FrameData
    (image sources) or a ``TensorBatch`` (e.g. voxels + labels), passed by keyword.
    """

    @property
    def min_frames_per_scene(self) -> Optional[int]:
        """Frames each scene of an image batch must hold (None: the model takes no scenes)."""
        return None

    def compile_target(self) -> Callable[..., Any]:
        """The bound method that the trainer's ``compile_model`` compiles: ``self.forward`` (the
        default) compiles the whole training forward; a model whose forward makes Python-object
        decisions (scene names, coins, host reads) returns a tensor-only method that its forward
        calls as ``self.<name>(...)``, so those decisions stay out of the graphs and stop
        triggering recompiles (holo3d.train.step.compiled_training_forward)."""
        return self.forward  # type: ignore[attr-defined]


class RenderableModel:
    """A model whose samples (or reconstructions) can be shown as frames."""

    output_kind = OutputKind.RADIANCE_GRID  # class attribute (not a config field); override it

    @property
    def scene_extent(self) -> float:
        """Side of the world cube [-e/2, e/2]^3 that samples occupy (camera paths are scaled to it);
        image models return 0 (their frames need no cameras)."""
        raise NotImplementedError(f"{type(self).__name__} does not declare scene_extent")

    @property
    def render_chunk_size(self) -> int:
        """Rays (or pixels) per batched pass when rendering full frames."""
        return 2**16

    def render_samples(
        self,
        samples: torch.Tensor,
        cameras: Optional[CamerasBase],
        image_size: Sequence[int],
        chunk_size: Optional[int] = None,
    ) -> Dict[str, torch.Tensor]:
        """Frames of B samples from V cameras each (B*V cameras, sample-major; None for image models).

        Returns a dict with ``rgb`` (B, V, 3, H, W) in [0, 1] and, where the model has them,
        ``depth`` (B, V, 1, H, W) and ``opacity`` (B, V, 1, H, W). No gradients.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement render_samples")


class GenerativeModel(RenderableModel):
    """A model that draws samples from noise (optionally conditioned)."""

    @property
    def can_sample(self) -> bool:
        """False for configurations that have no generative part (e.g. reconstruction baselines)."""
        return True

    @property
    def cannot_sample_reason(self) -> str:
        """Why ``can_sample`` is False (shown to users)."""
        return ""

    def conditions(self, n: int, label: str = "") -> Any:
        """The ``cond`` for n samples of ``label`` (e.g. a category name), or None: unconditional.

        Raises ValueError naming the label and the known ones when the model does not know it.
        """
        if label:
            raise ValueError(f"{type(self).__name__} is unconditional: label={label!r} is not used")
        return None

    def sample(
        self,
        n: int,
        *,
        cond: Any = None,
        sampler: str = PREVIEW_SAMPLER,
        steps: Optional[int] = None,
        eta: float = 0.0,
        guidance_scale: float = 1.0,
        generator: Optional[torch.Generator] = None,
        callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
        device: Optional[torch.device] = None,
        **sampler_kwargs,
    ) -> torch.Tensor:
        """n samples (n, ...) drawn with the diffusion engine's sampler ``sampler``.

        ``callback(step, x_t, x0_hat)`` is called after every step (progressive videos);
        ``guidance_scale`` is classifier-free guidance (1: the conditional model alone).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement sample")

    def sampling_accelerated(self, enabled: bool = True) -> ContextManager[None]:
        """A context in which sampling may use device-specific speed-ups (e.g. CUDA graphs)."""
        return contextlib.nullcontext()

    @torch.no_grad()
    def preview_frames(self, n_frames: int = 16, image_size: int = 64, steps: int = 10, seed: int = 0) -> torch.Tensor:
        """One few-step sample on a small turntable, (T, 3, H, W) float in [0, 1] on the CPU.

        Draws from its own seeded generator (the training RNG streams stay untouched, keeping resume
        exact) and puts the model back in the train / eval mode it was in.
        """
        from holo3d.render.trajectories import DEFAULT_DISTANCE_PER_EXTENT, turntable_cameras

        module: torch.nn.Module = self  # type: ignore[assignment]
        device = next(module.parameters()).device
        was_training = module.training
        module.eval()
        try:
            generator = torch.Generator(device=device).manual_seed(seed)
            sample = self.sample(1, cond=self.conditions(1), sampler=PREVIEW_SAMPLER, steps=steps,
                                 generator=generator, device=device)
            cameras = None
            if self.scene_extent > 0:
                distance = DEFAULT_DISTANCE_PER_EXTENT * self.scene_extent
                cameras = turntable_cameras(n_frames, elevation_deg=20.0, distance=distance, device=device)
            out = self.render_samples(sample, cameras, (image_size, image_size))  # rgb (1, T, 3, H, W)
            return out["rgb"][0].float().clamp(0, 1).cpu()
        finally:
            module.train(was_training)


class ReconstructionModel(RenderableModel):
    """A model that reconstructs a scene from K posed source views (few-view reconstruction)."""

    @property
    def input_fg_threshold(self) -> Optional[float]:
        """Inputs are composited on ``background`` with masks binarised at this value (None: not)."""
        return None

    @property
    def background(self) -> Tuple[float, float, float]:
        """Colour renders have where nothing is, and the colour inputs are composited on."""
        return (1.0, 1.0, 1.0)

    @property
    def max_denoise_from_t(self) -> int:
        """The largest ``denoise_from_t`` that ``reconstruct_from_views`` accepts (0: it cannot
        denoise, e.g. no diffusion model)."""
        return 0

    def reconstruct_from_views(
        self,
        rgb: torch.Tensor,
        fg: torch.Tensor,
        cameras: CamerasBase,
        crop: Optional[torch.Tensor] = None,
        *,
        denoise_from_t: int = 0,
        denoise_steps: int = 10,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Samples (S, ...) reconstructed from sources rgb (S, K, 3, H, W), fg (S, K, 1, H, W),
        S*K cameras (scene-major), crop (S, K, 1, H, W) or None.

        ``denoise_from_t > 0`` (diffusion models): noise the reconstruction to that timestep and
        denoise it back in ``denoise_steps`` steps, letting the prior fill in what K views miss.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement reconstruct_from_views")


class FieldModel:
    """A model whose samples define a radiance field that can be queried at points."""

    def query_field(
        self, sample: torch.Tensor, points: torch.Tensor, directions: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Density (M,) and rgb (M, 3) of one sample at world points (M, 3) seen along directions (M, 3)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement query_field")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
