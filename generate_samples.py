#!/usr/bin/env python
"""Sample grids from a trained diffusion experiment and render them as turntable videos.

    python generate_samples.py exp_dir=EXP num_samples=15 render_size=[256,256] video_size=[512,512] \
        save_voxel_features=True export_mesh=True sampler=ddpm|ddim|heun|euler steps=N seed=S

Works from exp_dir alone (expconfig.yaml + newest checkpoint, EMA weights when present); writes
EXP/generated_samples/. All keys: holo3d/sample/script_config.py (SampleConfig).
"""

import hydra

from holo3d.sample.script_config import register_script_configs
from holo3d.sample.script_runner import run_script

register_script_configs()


@hydra.main(config_path=None, config_name="generate_samples", version_base="1.3")
def main(cfg) -> None:
    run_script("holo3d.sample.generate:generate_samples", cfg, "generate_samples.py")


if __name__ == "__main__":
    main()
