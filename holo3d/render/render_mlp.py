"""RenderMLP: decodes a voxel-grid feature (plus view direction) into density and colour.

A NeRF-style decoder: a ReLU trunk on the interpolated grid feature, with the input re-injected at
the skip layers; density is read off the trunk, colour from the trunk features plus a harmonic
encoding of the view direction. The colour layer's weight is split into a trunk part and a direction
part whose sum is broadcast, so the direction is encoded once per ray rather than concatenated onto
every point (P times less memory traffic for the part that only depends on the ray).

Two switches reproduce the official HoloDiffusion decoder: ``trunk_activation="last_leaky_relu"``
(its trunk is, through an inherited activation bug, affine with a single LeakyReLU at the end) and
``density_noise_std_train`` (N(0, std^2) noise on the raw density before its activation, in training
mode only, as NeRF and Implicitron regularise densities).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from pytorch3d.implicitron.tools.config import enable_get_default_args
from pytorch3d.renderer import HarmonicEmbedding
from torch import nn

_DENSITY_ACTIVATIONS = {"softplus": F.softplus, "relu": F.relu}
TRUNK_ACTIVATIONS = ("relu", "last_leaky_relu")


class RenderMLP(nn.Module):
    """Features + view directions -> (density, rgb).

    forward(features (..., F), directions (..., 3)) -> density (..., 1) >= 0, output (..., C): colour
    in [0, 1] by default (C = out_channels = 3, sigmoid), or C unbounded channels (color_activation
    "none", e.g. a latent image).
    ``directions`` need not be unit length and only has to broadcast against the leading dims of
    ``features`` (e.g. ``(S, R, 1, 3)`` against ``(S, R, P, C)``).

    Args (besides the sizes):
        density_activation: "softplus" (never exactly 0) or "relu" (the official code's).
        trunk_activation: "relu" after every trunk layer (a NeRF MLP), or "last_leaky_relu": no
            activation between trunk layers and one LeakyReLU after the last, i.e. a nearly affine
            decoder (the official code's effective MLP), so the grid itself must hold the shape.
        density_noise_std_train: std of Gaussian noise added to the raw density in training mode
            (``self.training``); 0 (default) adds none, the official code uses 1.0.
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
        out_channels: int = 3,
        color_activation: str = "sigmoid",
        trunk_activation: str = "relu",
        density_noise_std_train: float = 0.0,
    ):
        super().__init__()
        if trunk_activation not in TRUNK_ACTIVATIONS:
            raise ValueError(f"trunk_activation={trunk_activation!r}; expected one of {TRUNK_ACTIVATIONS}")
        if not density_noise_std_train >= 0.0:
            raise ValueError(f"density_noise_std_train={density_noise_std_train}; must be >= 0")
        self.trunk_activation = trunk_activation
        self.density_noise_std_train = float(density_noise_std_train)
        if density_activation not in _DENSITY_ACTIVATIONS:
            raise ValueError(
                f"density_activation={density_activation!r}; expected one of "
                f"{sorted(_DENSITY_ACTIVATIONS)}"
            )
        if color_activation not in ("sigmoid", "none"):
            raise ValueError(f"color_activation={color_activation!r}; expected 'sigmoid' or 'none'")
        self.out_channels = int(out_channels)
        self.color_activation = color_activation
        self.skip_layers = tuple(int(i) for i in skip_layers)
        self.density_activation = density_activation
        self.trunk = nn.ModuleList(
            nn.Linear(self._trunk_in(i, in_features, hidden_dim), hidden_dim)
            for i in range(n_layers)
        )
        # Density and the colour branch read the trunk output in one GEMM: (1 + color_hidden_dim).
        self.trunk_head = nn.Linear(hidden_dim, 1 + color_hidden_dim)
        self.dir_embedding = HarmonicEmbedding(n_harmonic_functions_dir, append_input=True)
        dir_dim = self.dir_embedding.get_output_dim(3)
        self.color_from_dir = nn.Linear(dir_dim, color_hidden_dim, bias=False)
        self.color_head = nn.Linear(color_hidden_dim, out_channels)

    def _trunk_in(self, layer: int, in_features: int, hidden_dim: int) -> int:
        if layer == 0:
            return in_features
        return hidden_dim + in_features if layer in self.skip_layers else hidden_dim

    def forward(
        self, features: torch.Tensor, directions: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        lead = features.shape[:-1]
        # 2-D contiguous rows: every GEMM then fuses its bias add (unfused adds on strided inputs
        # and a concatenation for the skip were a third of an H200 frame).
        x = features.reshape(-1, features.shape[-1])  # (N, C)
        h = self._trunk_relu(x) if self.trunk_activation == "relu" else self._trunk_affine(x)  # (N, hidden)
        out = _linear_padded(h, self.trunk_head).reshape(*lead, -1)  # (..., 1 + color_hidden)
        raw_density = out[..., :1]
        if self.training and self.density_noise_std_train > 0:
            raw_density = raw_density + self.density_noise_std_train * torch.randn_like(raw_density)
        density = _DENSITY_ACTIVATIONS[self.density_activation](raw_density)
        dir_code = self.color_from_dir(self.dir_embedding(F.normalize(directions.float(), dim=-1)))
        color_h = F.relu(out[..., 1:] + dir_code)  # (..., color_hidden): per-ray part broadcast
        color_h = color_h.reshape(-1, color_h.shape[-1])  # (N, color_hidden)
        out = _linear_padded(color_h, self.color_head).reshape(*lead, self.out_channels)  # (..., C)
        if self.color_activation == "sigmoid":
            out = torch.sigmoid(out)
        return density, out  # (..., 1), (..., C)

    def _trunk_relu(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU after every trunk layer, the input re-injected at the skips: (N, C) -> (N, hidden)."""
        h = x
        for i, layer in enumerate(self.trunk):
            if i > 0 and i in self.skip_layers:
                h = F.relu(_skip_linear(h, x, layer), inplace=True)  # (N, hidden)
            else:
                h = _linear_relu(h, layer)  # (N, hidden)
        return h

    def _trunk_affine(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk layers composed without activations, one LeakyReLU at the end: (N, C) -> (N, hidden)."""
        h = x
        for i, layer in enumerate(self.trunk):
            h = _skip_linear(h, x, layer) if i > 0 and i in self.skip_layers else layer(h)  # (N, hidden)
        return F.leaky_relu(h) if len(self.trunk) else h


def _linear_relu(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """relu(layer(x)) for 2-D x. Without autograd on CUDA (full-frame renders) the bias and ReLU
    run in the cuBLASLt epilogue (``torch._addmm_activation``, which has no backward): saves ~13% of
    an H200 frame."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad)
    if x.is_cuda and not needs_grad and hasattr(torch, "_addmm_activation"):
        dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else x.dtype
        weight, bias = layer.weight.to(dtype), layer.bias.to(dtype)
        return torch._addmm_activation(bias, x.to(dtype), weight.t())
    return F.relu(layer(x), inplace=True)


def _skip_linear(h: torch.Tensor, x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """layer(cat([h, x], -1)) as h @ W_h^T + (x @ W_x^T + b): the GEMM epilogue adds the skip part,
    so the (N, hidden + C) concatenation is never written (a slow copy on GPU)."""
    w_h, w_x = layer.weight[:, : h.shape[-1]], layer.weight[:, h.shape[-1] :]
    return torch.addmm(F.linear(x, w_x, layer.bias), h, w_h.t())  # (N, hidden)


def _linear_padded(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """layer(x) for 2-D x, computed on CUDA with the output width padded to a multiple of 8: cuBLAS
    falls back to slow sm75 kernels for unaligned widths (129 and 3 here, ~4x slower on an H200)."""
    out_features = layer.out_features
    pad = -out_features % 8
    if pad == 0 or not x.is_cuda:
        return layer(x)
    weight, bias = F.pad(layer.weight, (0, 0, 0, pad)), F.pad(layer.bias, (0, pad))
    return F.linear(x, weight, bias)[:, :out_features]  # (N, out_features) view


enable_get_default_args(RenderMLP)
