"""A tiny registered model and data source for the trainer's tests (fast on CPU, random inside).

TinyTestModel consumes random numbers every step (pixel subsampling), so resume tests only pass if
the trainer restores RNG states exactly.
"""

from typing import List

import torch
from pytorch3d.implicitron.dataset.data_loader_map_provider import DataLoaderMap
from pytorch3d.implicitron.dataset.data_source import DataSourceBase
from pytorch3d.implicitron.dataset.dataset_map_provider import DatasetMap
from pytorch3d.implicitron.dataset.frame_data import FrameData
from pytorch3d.implicitron.models.base_model import ImplicitronModelBase, ImplicitronRender
from pytorch3d.implicitron.tools.config import registry
from pytorch3d.renderer import PerspectiveCameras

from holo3d.data.scene_batch import SceneSource
from holo3d.models.protocol import TrainableModel


class _TinyDataset(torch.utils.data.Dataset):
    def __init__(self, n_scenes: int, frames_per_scene: int, image_size: int):
        self.n_scenes, self.frames_per_scene, self.image_size = n_scenes, frames_per_scene, image_size

    def __len__(self):
        return self.n_scenes * self.frames_per_scene

    def __getitem__(self, index: int) -> FrameData:
        scene = index // self.frames_per_scene
        generator = torch.Generator().manual_seed(index)
        colour = torch.tensor([0.2 + 0.15 * scene, 0.5, 0.8 - 0.1 * scene]).clamp(0, 1)
        image = (colour[:, None, None] + 0.05 * torch.randn(3, self.image_size, self.image_size,
                                                            generator=generator)).clamp(0, 1)
        return FrameData(
            frame_number=torch.tensor(index),
            sequence_name=f"scene_{scene:03d}",
            sequence_category="tiny",
            image_rgb=image,
            fg_probability=torch.ones(1, self.image_size, self.image_size),
            camera=PerspectiveCameras(T=torch.tensor([[0.0, 0.0, 3.0 + 0.1 * index]])),
        )


class _SceneBatchSampler:
    """scenes_per_batch scenes x all frames, scene order reshuffled per epoch from the seed."""

    def __init__(self, dataset: _TinyDataset, scenes_per_batch: int, n_batches: int, seed: int):
        self.dataset, self.scenes_per_batch, self.n_batches, self.seed = dataset, scenes_per_batch, n_batches, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return self.n_batches

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        frames = self.dataset.frames_per_scene
        for _ in range(self.n_batches):
            scenes = torch.randperm(self.dataset.n_scenes, generator=generator)[: self.scenes_per_batch]
            yield [int(s) * frames + f for s in scenes for f in range(frames)]


@registry.register
class TinyTestDataSource(DataSourceBase, SceneSource):
    n_scenes: int = 4
    frames_per_scene: int = 3
    scenes_per_batch: int = 2
    image_size: int = 8
    dataset_length_train: int = 2
    seed: int = 0

    def get_datasets_and_dataloaders(self):
        dataset = _TinyDataset(self.n_scenes, self.frames_per_scene, self.image_size)

        def loader(n_batches: int, seed: int):
            sampler = _SceneBatchSampler(dataset, self.scenes_per_batch, n_batches, seed)
            return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=FrameData.collate)

        return (DatasetMap(train=dataset, val=dataset, test=None),
                DataLoaderMap(train=loader(self.dataset_length_train, self.seed),
                              val=loader(1, self.seed + 1), test=None))


@registry.register
class TinyTestModel(ImplicitronModelBase, TrainableModel):
    """Predicts each pixel's colour from the camera distance with a small MLP."""

    hidden: int = 8
    n_targets: int = 1
    n_pixels: int = 16
    nan_at_iterations: List[int] = ()  # iterations whose loss is made NaN (tests the skipping)
    raise_at_iterations: List[int] = ()  # iterations whose forward raises FloatingPointError
    log_vars: List[str] = ("objective", "psnr")

    def __post_init__(self):
        self.net = torch.nn.Sequential(torch.nn.Linear(1, self.hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(self.hidden, 3))

    @property
    def min_frames_per_scene(self) -> int:
        return self.n_targets + 1

    def forward(self, *, image_rgb, camera, iteration=None, **kwargs):
        B, _, H, W = image_rgb.shape
        pixels = torch.randint(0, H * W, (B, self.n_pixels), device=image_rgb.device)
        target = image_rgb.flatten(2).gather(2, pixels[:, None].expand(-1, 3, -1))  # (B, 3, n)
        colour = torch.sigmoid(self.net(camera.T[:, 2:3]))[:, :, None]  # (B, 3, 1)
        loss = ((colour - target) ** 2).mean()
        if iteration is not None and iteration in list(self.raise_at_iterations):
            raise FloatingPointError(f"non-finite values in grid at iteration {iteration}")
        if iteration is not None and iteration in list(self.nan_at_iterations):
            loss = loss * float("nan")
        render = colour[:, :, :, None].expand(-1, -1, H, W)
        return {
            "objective": loss,
            "psnr": -10.0 * torch.log10(loss.detach().float().clamp_min(1e-10)),
            "implicitron_render": ImplicitronRender(image_render=render.detach()),
        }
