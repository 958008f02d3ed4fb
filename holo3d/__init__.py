"""holo3d: a Hydra-configured, Implicitron-style training framework for 3D-aware diffusion models.

    import holo3d
    model = holo3d.load("exp/base")          # an experiment folder or a `python -m holo3d.export` folder
    grids = model.sample(4)
    frames = holo3d.render_turntable(model, grids, n_frames=48)   # (4, 48, 3, H, W)

Packages (one concept per folder):
    data/       data sources (CO3Dv2 and the built-in synthetic dataset written in its format)
    models/     registered models (HoloDiffusion) and their plain nn.Module leaves (3D U-Net, lifting)
    render/     voxel-grid radiance field, ray sampling, emission-absorption raymarching, trajectories
    diffusion/  the diffusion math only: schedules, q_sample, parameterisations, samplers
    train/      the replicated Implicitron trainer: experiment, factories, loop, checkpoints, EMA
    sample/     sampling drivers, video and mesh writers
    eval/       image metrics and report writers
    viz/        visdom / tensorboard / W&B loggers and the dashboard launcher
    api, export the Python API (load, render_turntable) and the weights + config export

Tensor-shape glossary used in docstrings and trailing comments:
    S  scenes in a batch            N  frames per scene (targets first, then sources)
    T  target views per scene       K  source views per scene (N = T + K)
    B  generic batch                V  views
    C  channels                     D H W  grid depth/height/width (or image H W)
    R  rays per image               P  points per ray
"""

__version__ = "0.1.0"
__all__ = ["load", "render_turntable"]


def __getattr__(name: str):
    # Lazy: `import holo3d.data` etc. must not pay for torch / pytorch3d / Hydra via the API.
    if name in __all__:
        from holo3d import api

        return getattr(api, name)
    raise AttributeError(f"module 'holo3d' has no attribute {name!r}")
