"""holo3d: a Hydra-configured, Implicitron-style training framework for 3D-aware diffusion models.

Packages (one concept per folder):
    data/       data sources (CO3Dv2 and the built-in synthetic dataset written in its format)
    models/     registered models (HoloDiffusion) and their plain nn.Module leaves (3D U-Net, lifting)
    render/     voxel-grid radiance field, ray sampling, emission-absorption raymarching, trajectories
    diffusion/  the diffusion math only: schedules, q_sample, parameterisations, samplers
    train/      the replicated Implicitron trainer: experiment, factories, loop, checkpoints, EMA
    sample/     sampling drivers, video and mesh writers
    eval/       image metrics and report writers
    viz/        visdom / tensorboard loggers and the dashboard launcher

Tensor-shape glossary used in docstrings and trailing comments:
    S  scenes in a batch            N  frames per scene (targets first, then sources)
    T  target views per scene       K  source views per scene (N = T + K)
    B  generic batch                V  views
    C  channels                     D H W  grid depth/height/width (or image H W)
    R  rays per image               P  points per ray
"""

__version__ = "0.1.0"
