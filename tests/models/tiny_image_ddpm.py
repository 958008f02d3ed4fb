"""TinyImageDDPM: the sixth model of tests/models/test_sixth_model.py, added as docs/ARCHITECTURE.md
says: one registered model class implementing the model protocol (a 2D image DDPM, eps prediction,
over the images of the trainer's tiny data source). Registered from tests/conftest.py at collection
start, like the trainer's tiny components.
"""

from typing import List

import torch
from pytorch3d.implicitron.models.base_model import ImplicitronModelBase
from pytorch3d.implicitron.tools.config import registry
from torch import nn

from holo3d.diffusion import SAMPLERS, VPDiffusion
from holo3d.models.protocol import GenerativeModel, OutputKind, TrainableModel


@registry.register
class TinyImageDDPM(ImplicitronModelBase, TrainableModel, GenerativeModel):  # pyre-ignore[13]
    """eps-prediction DDPM over the data source's images (B, 3, H, W), scaled to [-1, 1]."""

    image_size: int = 8
    channels: int = 16
    num_steps: int = 50
    log_vars: List[str] = ("objective",)
    output_kind = OutputKind.IMAGES

    def __post_init__(self):
        self.net = nn.Sequential(
            nn.Conv2d(4, self.channels, 3, padding=1), nn.SiLU(),
            nn.Conv2d(self.channels, self.channels, 3, padding=1), nn.SiLU(),
            nn.Conv2d(self.channels, 3, 3, padding=1),
        )
        self.diffusion = VPDiffusion(num_steps=self.num_steps, beta_end=0.2, prediction="eps")

    def _eps(self, x_t, t):
        t_map = (t.float() / self.num_steps)[:, None, None, None].expand(-1, 1, *x_t.shape[-2:])
        return self.net(torch.cat([x_t, t_map.to(x_t.dtype)], dim=1))  # (B, 3, H, W)

    def forward(self, *, image_rgb, evaluation_mode=None, iteration=None, **kwargs):
        x0 = image_rgb * 2 - 1  # (B, 3, H, W)
        t = self.diffusion.sample_t(x0.shape[0], x0.device)
        eps = torch.randn_like(x0)
        loss = self.diffusion.loss(self._eps(self.diffusion.noise(x0, t, eps), t), x0, eps, t).mean()
        return {"objective": loss}

    @property
    def scene_extent(self) -> float:
        return 0.0  # images: no camera path

    @torch.no_grad()
    def sample(self, n, *, cond=None, sampler="ddim", steps=None, eta=0.0, guidance_scale=1.0,
               generator=None, callback=None, device=None, **kwargs):
        options = {"eta": eta} if "eta" in SAMPLERS[sampler].options else {}
        shape = (n, 3, self.image_size, self.image_size)
        return self.diffusion.sample(sampler, self._eps, shape, steps, generator=generator, callback=callback,
                                     device=device, **options, **kwargs)

    def render_samples(self, samples, cameras, image_size, chunk_size=None):
        rgb = torch.nn.functional.interpolate((samples + 1) / 2, size=tuple(image_size), mode="nearest")
        return {"rgb": rgb.clamp(0, 1)[:, None]}  # (B, 1, 3, H, W)
