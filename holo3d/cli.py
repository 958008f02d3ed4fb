"""Console-script targets of the sampling, reconstruction and distillation scripts (``holo3d-sample``,
``holo3d-reconstruct``, ``holo3d-distill``); generate_samples.py / visualize_reconstruction.py /
distill.py call the same functions.
Training is ``holo3d.train.config_cli:main`` (``holo3d-train``), the export ``holo3d.export:main``.
"""

import hydra

from holo3d.sample.distill_config import register_distill_config
from holo3d.sample.script_config import register_script_configs
from holo3d.sample.script_runner import run_script

register_script_configs()
register_distill_config()


@hydra.main(config_path=None, config_name="generate_samples", version_base="1.3")
def sample_main(cfg) -> None:
    """Sample grids from a trained experiment and render them as turntable videos."""
    run_script("holo3d.sample.generate:generate_samples", cfg, "generate_samples.py")


@hydra.main(config_path=None, config_name="visualize_reconstruction", version_base="1.3")
def reconstruct_main(cfg) -> None:
    """Few-view reconstructions of held-out sequences: renders, turntables and image metrics."""
    run_script("holo3d.sample.reconstruct:visualize_reconstruction", cfg, "visualize_reconstruction.py")


@hydra.main(config_path=None, config_name="distill", version_base="1.3")
def distill_main(cfg) -> None:
    """Distill the experiment's view-conditioned denoiser into one field per held-out scene."""
    run_script("holo3d.sample.distillation:distill_scenes", cfg, "distill.py")
