"""Emission-absorption raymarching: the NeRF quadrature of the volume rendering integral.

For samples at depths t_1 < ... < t_P with densities sigma_i and colours c_i, and deltas
delta_i = t_{i+1} - t_i (delta_P = ``last_delta``):

    alpha_i = 1 - exp(-sigma_i delta_i),  T_i = exp(-sum_{j<i} sigma_j delta_j),  w_i = T_i alpha_i
    rgb = sum_i w_i c_i + (1 - sum_i w_i) * bg,   depth = sum_i w_i t_i,   opacity = sum_i w_i.

The transmittance uses an exclusive cumulative sum rather than ``cumsum - tau``: with a 1e10 last
delta the latter cancels catastrophically in float32.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import torch

BgColor = Union[float, Sequence[float], torch.Tensor]


def emission_absorption(
    densities: torch.Tensor,
    colors: torch.Tensor,
    depths: torch.Tensor,
    bg_color: BgColor = (0.0, 0.0, 0.0),
    last_delta: Optional[float] = 1e10,
    ray_scale: Optional[torch.Tensor] = None,
) -> Dict[str, torch.Tensor]:
    """Composites samples along each ray over a background colour (computed in float32).

    Args:
        densities: (..., P) non-negative.
        colors: (..., P, C) (C = 3 for colour; any number of feature channels).
        depths: (..., P) sorted ray lengths.
        bg_color: scalar, (C,) or a tensor broadcastable to (..., C).
        last_delta: length of the last interval: large (1e10, the default) makes the last sample
            absorb all light that reaches it; None replicates the previous interval, for fields that
            end where the samples end (a bounded volume).
        ray_scale: (..., 1) world length of one unit of depth (|direction| for unnormalised
            directions), so densities are per world unit. None means 1.
    Returns:
        dict of rgb (..., C) (the composited channels), depth (..., 1), opacity (..., 1), weights (..., P).
    """
    densities, colors, depths = densities.float(), colors.float(), depths.float()
    deltas = _deltas(depths, last_delta)  # (..., P)
    if ray_scale is not None:
        deltas = deltas * ray_scale.float()
    tau = densities * deltas  # (..., P) optical thickness of each interval
    tau_before = torch.cumsum(tau[..., :-1], dim=-1)
    tau_before = torch.cat([torch.zeros_like(tau[..., :1]), tau_before], dim=-1)  # (..., P)
    weights = torch.exp(-tau_before) * -torch.expm1(-tau)  # (..., P)
    opacity = weights.sum(dim=-1, keepdim=True)
    bg = torch.as_tensor(bg_color, dtype=colors.dtype, device=colors.device)
    rgb = (weights[..., None] * colors).sum(dim=-2) + (1.0 - opacity) * bg
    depth = (weights * depths).sum(dim=-1, keepdim=True)
    return {"rgb": rgb, "depth": depth, "opacity": opacity, "weights": weights}


def _deltas(depths: torch.Tensor, last_delta: Optional[float]) -> torch.Tensor:
    diffs = depths[..., 1:] - depths[..., :-1]  # (..., P - 1)
    if last_delta is None:
        last = diffs[..., -1:] if diffs.shape[-1] > 0 else torch.zeros_like(depths[..., :1])
    else:
        last = torch.full_like(depths[..., :1], float(last_delta))
    return torch.cat([diffs, last], dim=-1)  # (..., P)
