#!/usr/bin/env python
"""Sample grids from a trained diffusion experiment and render them as turntable videos
(also installed as ``holo3d-sample``).

    python generate_samples.py exp_dir=EXP num_samples=15 render_size=[256,256] video_size=[512,512] \
        save_voxel_features=True export_mesh=True sampler=ddpm|ddim|heun|euler steps=N seed=S

Works from exp_dir alone (expconfig.yaml + newest checkpoint, EMA weights when present); writes
EXP/generated_samples/. All keys: holo3d/sample/script_config.py (SampleConfig).
"""

from holo3d.cli import sample_main

if __name__ == "__main__":
    sample_main()
