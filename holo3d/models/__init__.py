"""holo3d.models: registered models and their plain nn.Module leaves.

    protocol        what the trainer, sample/, eval/ and the monitor may call on a model
    unet3d          UNet3D: timestep-conditioned 3D U-Net denoiser (leaf)
    unet2d          UNet2D: noise-level / cond-conditioned 2D U-Net denoiser (leaf of GeNVS, ViewFusion)
    voxel_autoencoder  VoxelAutoencoder: 3D conv occupancy autoencoder (leaf of the voxel LDM)
    feature_lift    FeatureLifter: posed images -> pooled voxel feature grid V0 (leaf)
    grid_diffusion  GridDiffusion: DDPM schedule + sampler glue for grids
    target_views    TargetViews: target / source split of a SceneBatch, render losses
    losses          photometric losses and PSNR on rendered rays
    numerics        FiniteCheck: non-finite grids / renders reported with the iteration
    holo_diffusion  HoloDiffusionModel (registered ImplicitronModelBase)
    genvs           GenvsModel (registered): novel views from an EDM 2D denoiser on a frustum latent field
    view_fusion     ViewFusionModel (registered): composable denoising over any number of views
    voxel_ldm       VoxelAutoencoderModel (stage 1) and VoxelLDM (stage 2): the 3D voxel latent
                    diffusion model with classifier-free guidance (registered)

Importing this package registers every model, so registration never depends on import order.
"""

from holo3d.models.feature_lift import FeatureLifter
from holo3d.models.genvs import GenvsModel
from holo3d.models.holo_diffusion import HoloDiffusionModel
from holo3d.models.unet3d import UNet3D
from holo3d.models.view_fusion import ViewFusionModel
from holo3d.models.voxel_autoencoder import VoxelAutoencoder
from holo3d.models.voxel_ldm import VoxelAutoencoderModel, VoxelLDM

__all__ = [
    "FeatureLifter", "GenvsModel", "HoloDiffusionModel", "UNet3D", "ViewFusionModel", "VoxelAutoencoder",
    "VoxelAutoencoderModel", "VoxelLDM",
]
