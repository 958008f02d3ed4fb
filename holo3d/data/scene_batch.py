"""SceneBatch: the view of a collated FrameData batch that the models work on.

Every image-based data source yields Implicitron ``FrameData`` batches of ``S * N`` frames, scene-major:
frames ``[s * N, (s + 1) * N)`` belong to scene ``s``, and inside a scene the first ``T`` frames are the
targets and the remaining ``K = N - T`` are the sources. ``SceneBatch`` regroups that flat batch into
``(S, N, ...)`` tensors and checks the grouping against ``sequence_name`` so that a loader that mixes
scenes is caught instead of silently pooling features across objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from pytorch3d.implicitron.dataset.frame_data import FrameData
from pytorch3d.renderer.cameras import PerspectiveCameras


def scene_sizes(sequence_names: Sequence[str]) -> List[int]:
    """Lengths of the runs of equal consecutive sequence names, e.g. [a,a,b,b] -> [2, 2]."""
    sizes: List[int] = []
    previous = None
    for name in sequence_names:
        if name == previous:
            sizes[-1] += 1
        else:
            sizes.append(1)
            previous = name
    return sizes


class SceneSource:
    """Marks a data source whose batches are S scenes x N posed frames; it declares
    ``frames_per_scene`` (N), which the experiment checks against the model's ``min_frames_per_scene``."""


@dataclass
class SceneBatch:
    """A batch of S scenes with N frames each (targets first, then sources).

    Attributes:
        image_rgb: (S, N, 3, H, W) in [0, 1].
        fg_probability: (S, N, 1, H, W) in [0, 1].
        mask_crop: (S, N, 1, H, W) or None; 1 where the image holds real pixels (not padding).
        depth_map: (S, N, 1, H, W) or None.
        camera: PerspectiveCameras of S * N cameras in NDC, scene-major (same order as the frames).
        sequence_name: S names, one per scene.
    """

    image_rgb: torch.Tensor
    fg_probability: torch.Tensor
    mask_crop: Optional[torch.Tensor]
    depth_map: Optional[torch.Tensor]
    camera: PerspectiveCameras
    sequence_name: List[str]

    @property
    def n_scenes(self) -> int:
        return self.image_rgb.shape[0]

    @property
    def n_frames(self) -> int:
        return self.image_rgb.shape[1]

    def cameras_of(self, frames: slice) -> PerspectiveCameras:
        """Cameras of the given frame slice of every scene, scene-major: S * len(slice) cameras."""
        n_frames = self.n_frames
        index = torch.arange(self.n_scenes * n_frames).view(self.n_scenes, n_frames)[:, frames]
        return self.camera[index.reshape(-1).tolist()]

    @classmethod
    def from_frame_data(
        cls, frame_data: FrameData, frames_per_scene: Optional[int] = None
    ) -> "SceneBatch":
        """Regroups a flat, scene-major FrameData batch of S * N frames into (S, N, ...).

        ``frames_per_scene`` defaults to the run lengths of ``sequence_name``; all scenes must have
        the same number of frames.
        """
        names = frame_data.sequence_name
        names = [names] if isinstance(names, str) else list(names)
        sizes = scene_sizes(names)
        n_frames = frames_per_scene or sizes[0]
        if any(size % n_frames for size in sizes):
            raise ValueError(
                f"batch sequence_name runs {sizes} do not split into scenes of {n_frames} frames; "
                "the data loader must yield whole scenes, scene-major"
            )
        total = frame_data.image_rgb.shape[0]
        n_scenes = total // n_frames

        def regroup(tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            if tensor is None:
                return None
            return tensor.reshape(n_scenes, n_frames, *tensor.shape[1:])  # (S, N, C, H, W)

        fg = frame_data.fg_probability
        if fg is None:
            fg = torch.ones_like(frame_data.image_rgb[:, :1])
        return cls(
            image_rgb=regroup(frame_data.image_rgb),
            fg_probability=regroup(fg),
            mask_crop=regroup(frame_data.mask_crop),
            depth_map=regroup(frame_data.depth_map),
            camera=frame_data.camera,
            sequence_name=names[::n_frames],
        )


def random_view_mask(
    n_scenes: int, n_views: int, min_views: int = 1, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """(S, V) bool: scene s keeps its first k_s views, k_s ~ U{min_views..V} (the rest are padding).

    How a batch mixes samples with different numbers of conditioning views while every tensor keeps
    the static (S, V, ...) shape: models mask the padding (e.g. ViewFusion's softmax weights get -inf
    there).
    """
    if not 1 <= min_views <= n_views:
        raise ValueError(f"min_views={min_views} must be in [1, n_views={n_views}]")
    counts = torch.randint(min_views, n_views + 1, (n_scenes,), generator=generator)  # (S,)
    return torch.arange(n_views)[None] < counts[:, None]  # (S, V)


def view_angles(cameras: PerspectiveCameras) -> torch.Tensor:
    """Pose-free view metadata: (azimuth, elevation) in radians of each camera centre seen from the
    world origin (the object centre), (N, 2). Azimuth is measured in the x-z plane from +z towards
    +x, elevation towards +y, as PyTorch3D's ``look_at_view_transform`` places cameras."""
    centre = cameras.get_camera_center()  # (N, 3)
    azimuth = torch.atan2(centre[:, 0], centre[:, 2])
    elevation = torch.atan2(centre[:, 1], centre[:, [0, 2]].norm(dim=-1))
    return torch.stack([azimuth, elevation], dim=-1)  # (N, 2)
