"""RenderMLP: decodes a voxel-grid feature (plus view direction) into density and colour.

A NeRF-style decoder: a ReLU trunk on the interpolated grid feature, with the input re-injected at the
skip layers; density is read off the trunk, colour from the trunk features plus a harmonic encoding of
the view direction. The colour layer's weight is split into a trunk part and a direction part whose
sum is broadcast, so the direction is encoded once per ray rather than concatenated onto every point
(P times less memory traffic for the part that only depends on the ray).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from pytorch3d.implicitron.tools.config import enable_get_default_args
from pytorch3d.renderer import HarmonicEmbedding
from torch import nn

_DENSITY_ACTIVATIONS = {"softplus": F.softplus, "relu": F.relu}


class RenderMLP(nn.Module):
    """Features + view directions -> (density, rgb).

    forward(features (..., C), directions (..., 3)) -> density (..., 1) >= 0, rgb (..., 3) in [0, 1].
    ``directions`` need not be unit length and only has to broadcast against the leading dims of
    ``features`` (e.g. ``(S, R, 1, 3)`` against ``(S, R, P, C)``).
    """

    def __init__(
        self,
        in_features: int,
        hidden_dim: int = 256,
        n_layers: int = 4,
        skip_layers: Tuple[int, ...] = (2,),
        n_harmonic_functions_dir: int = 4,
        color_hidden_dim: int = 128,
        density_activation: str = "softplus",
    ):
        super().__init__()
        if density_activation not in _DENSITY_ACTIVATIONS:
            raise ValueError(
                f"density_activation={density_activation!r}; expected one of "
                f"{sorted(_DENSITY_ACTIVATIONS)}"
            )
        self.skip_layers = tuple(int(i) for i in skip_layers)
        self.density_activation = density_activation
        self.trunk = nn.ModuleList(
            nn.Linear(self._trunk_in(i, in_features, hidden_dim), hidden_dim)
            for i in range(n_layers)
        )
        self.density_head = nn.Linear(hidden_dim, 1)
        self.dir_embedding = HarmonicEmbedding(n_harmonic_functions_dir, append_input=True)
        dir_dim = self.dir_embedding.get_output_dim(3)
        self.color_from_trunk = nn.Linear(hidden_dim, color_hidden_dim)
        self.color_from_dir = nn.Linear(dir_dim, color_hidden_dim, bias=False)
        self.color_head = nn.Linear(color_hidden_dim, 3)

    def _trunk_in(self, layer: int, in_features: int, hidden_dim: int) -> int:
        if layer == 0:
            return in_features
        return hidden_dim + in_features if layer in self.skip_layers else hidden_dim

    def forward(
        self, features: torch.Tensor, directions: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        h = features
        for i, layer in enumerate(self.trunk):
            if i > 0 and i in self.skip_layers:
                h = torch.cat([h, features.to(h.dtype)], dim=-1)  # (..., hidden + C)
            h = F.relu(layer(h))
        density = _DENSITY_ACTIVATIONS[self.density_activation](self.density_head(h))
        dir_code = self.dir_embedding(F.normalize(directions.float(), dim=-1))
        color_h = F.relu(self.color_from_trunk(h) + self.color_from_dir(dir_code))
        rgb = torch.sigmoid(self.color_head(color_h))
        return density, rgb  # (..., 1), (..., 3)


enable_get_default_args(RenderMLP)
