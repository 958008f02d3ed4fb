"""One entry point for every sampler: ``sample(name, denoise_fn, shape, schedule, steps=None, ...)``.

Models and scripts choose a sampler by name from config (``SAMPLERS`` is the one list of valid
names); the schedule says what the denoiser's level argument is:
    (T,) alpha_bars tensor  -> a VP-trained model: ``denoise_fn(x_t, t, **cond) -> x0``. DDPM and DDIM
        run over its integer timesteps; the sigma-space samplers (Euler, Heun, DPM-Solver++) run over
        Karras sigmas spanning the schedule through ``vp_denoiser_as_sigma_denoiser``.
    ``EDMSchedule``         -> an EDM model: ``denoise_fn(x, sigma, **cond) -> x0``; sigma-space
        samplers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .samplers import (
    Callback,
    DenoiseFn,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
)
from .schedules import EDMSchedule, as_coef, karras_sigmas, sigma_to_t, vp_sigma_range

Schedule = Union[Tensor, EDMSchedule]

# ----------------------------------------------------------------------------- VP <-> sigma


def vp_denoiser_as_sigma_denoiser(
    denoise_fn_t: DenoiseFn, alpha_bars: Tensor, round_t: bool = False
) -> Callable[..., Tensor]:
    """Wrap a VP ``denoise_fn_t(x_t, t, **cond) -> x0`` into ``denoiser(x_sigma, sigma, **cond) -> x0``.

    x_t = sqrt(ab) x0 + sqrt(1 - ab) eps equals x_sigma sqrt(ab) for x_sigma = x0 + sigma eps and
    sigma = sqrt((1 - ab) / ab) (EDM sec. 2, App. C.1). An x0 prediction needs no rescaling, so only
    the input is scaled and the network is told the (fractional) timestep whose noise level is sigma.
    Args:
        alpha_bars: (T,) the training schedule.
        round_t: pass the nearest integer timestep (int64) for networks that only accept integer t
            (embedding tables); by default t is a float, interpolated in log-sigma.
    Sigmas beyond the schedule's range map to t = 0 or T-1 while the input is still scaled by the
    exact 1 / sqrt(1 + sigma^2), so keep sampling sigmas inside ``vp_sigma_range(alpha_bars)``.
    """
    on_device = {}  # alpha_bars per device: avoids a host-to-device copy (and sync) every step

    def denoiser(x_sigma: Tensor, sigma: Tensor, **cond) -> Tensor:
        if sigma.device not in on_device:
            on_device[sigma.device] = alpha_bars.to(sigma.device, torch.float64)
        t = sigma_to_t(sigma, on_device[sigma.device])  # (B,)
        if round_t:
            t = t.round().long()
        x_t = x_sigma * as_coef((1 + sigma.double() ** 2).rsqrt(), x_sigma)  # sqrt(ab) x_sigma
        return denoise_fn_t(x_t, t, **cond)

    return denoiser


# ----------------------------------------------------------------------------- runners per sampler


def _run_ddpm(denoise_fn, shape, schedule, steps, common, options):
    """All T steps: ancestral DDPM; fewer: DDIM with eta = 1 (the strided ancestral sampler)."""
    if steps is None or steps == len(schedule):
        return sample_ddpm(denoise_fn, shape, schedule, **common)
    return sample_ddim(denoise_fn, shape, schedule, steps=steps, eta=1.0, **common)


def _run_ddim(denoise_fn, shape, schedule, steps, common, options):
    return sample_ddim(denoise_fn, shape, schedule, steps=steps, **options, **common)


def _sigma_runner(sampler_fn):
    """Runs a sigma-space sampler over Karras sigmas of the schedule (eq. 5, rho = 7)."""

    def run(denoise_fn, shape, schedule, steps, common, options):
        if isinstance(schedule, EDMSchedule):
            return sampler_fn(denoise_fn, shape, schedule.sigmas(steps), **options, **common)
        sigmas = karras_sigmas(steps, *vp_sigma_range(schedule))
        sigma_fn = vp_denoiser_as_sigma_denoiser(denoise_fn, schedule)
        return sampler_fn(sigma_fn, shape, sigmas, **options, **common)

    return run


@dataclass(frozen=True)
class SamplerSpec:
    """A named sampler: how to run it, its default step count and the extra options it accepts."""

    run: Callable[..., Tensor]
    default_steps: Optional[int]  # None: all T steps of the schedule (DDPM)
    options: Tuple[str, ...]  # keyword options beyond the common ones, e.g. ("eta",)
    vp_only: bool  # needs integer VP timesteps (an alpha_bars schedule)
    summary: str

    def accepts(self, option: str) -> bool:
        return option in self.options


_CHURN = ("S_churn", "S_tmin", "S_tmax", "S_noise")

#: The one list of sampler names, in config order. Step counts are denoiser-call counts except
#: Heun's (2N - 1 calls for N steps).
SAMPLERS: Dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(_run_ddpm, None, (), True,
                        "ancestral DDPM (Ho et al. 2020); with steps < T, strided (DDIM eta = 1)"),
    "ddim": SamplerSpec(_run_ddim, 50, ("eta",), True, "DDIM (Song et al. 2021), eta = 0 deterministic"),
    "heun": SamplerSpec(_sigma_runner(sample_heun), 18, _CHURN, False,
                        "EDM Heun with optional churn (Karras et al. 2022, Alg. 2)"),
    "euler": SamplerSpec(_sigma_runner(sample_euler), 50, _CHURN, False,
                         "EDM Euler with optional churn (Alg. 2 without the correction)"),
    "dpmpp_2m": SamplerSpec(_sigma_runner(sample_dpmpp_2m), 25, (), False,
                            "DPM-Solver++(2M) (Lu et al. 2022), deterministic multistep"),
}


def sampler_spec(name: str) -> SamplerSpec:
    """The ``SamplerSpec`` of ``name``; a clear error listing the valid names otherwise."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def _check_call(name: str, spec: SamplerSpec, schedule: Schedule, steps, options: Mapping) -> None:
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise TypeError(f"sampler {name!r} takes no option(s) {unknown}; it accepts {list(spec.options)}")
    if isinstance(schedule, EDMSchedule):
        if spec.vp_only:
            raise ValueError(f"sampler {name!r} needs a VP (alpha_bars) schedule; for an EDM schedule use "
                             f"one of {[n for n, s in SAMPLERS.items() if not s.vp_only]}")
    elif not (isinstance(schedule, Tensor) and schedule.ndim == 1 and len(schedule) > 0):
        raise TypeError(f"schedule must be a (T,) alpha_bars tensor or an EDMSchedule, got {schedule!r:.80}")
    if steps is not None and (int(steps) != steps or steps < 1):
        raise ValueError(f"sampler {name!r}: steps={steps!r} must be a positive integer (or None)")


def sample(
    name: str,
    denoise_fn: DenoiseFn,
    shape: Sequence[int],
    schedule: Schedule,
    steps: Optional[int] = None,
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
    callback: Optional[Callback] = None,
    cond: Optional[Mapping] = None,
    noise: Optional[Tensor] = None,
    **options,
) -> Tensor:
    """Draw a (B, ...) sample of ``shape`` with the sampler ``name`` (a key of ``SAMPLERS``).

    Args:
        denoise_fn: ``denoise_fn(x, t_or_sigma (B,), **cond) -> x0`` (see the module docstring).
        schedule: (T,) alpha_bars of a VP model, or an ``EDMSchedule``.
        steps: sampler steps; None takes the sampler's ``default_steps``.
        generator / device / dtype / callback / cond / noise: as in ``holo3d.diffusion.samplers``.
        options: the sampler's own settings (``SAMPLERS[name].options``), e.g. eta or S_churn.
    """
    spec = sampler_spec(name)
    _check_call(name, spec, schedule, steps, options)
    steps = spec.default_steps if steps is None else int(steps)
    common = dict(generator=generator, device=device, dtype=dtype, callback=callback, cond=cond, noise=noise)
    return spec.run(denoise_fn, shape, schedule, steps, common, options)
