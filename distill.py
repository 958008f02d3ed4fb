#!/usr/bin/env python
"""SparseFusion-style distillation: one consistent 3D field per held-out scene from K input views and
a trained view-conditioned denoiser (a GenvsModel experiment).

    python distill.py exp_dir=DENOISER_EXP n_input_views=2 iterations=2000 max_scenes=5
    python distill.py exp_dir=DENOISER_EXP scenes=[obj_a,obj_b] max_seconds=60 camera_distribution=sphere

Writes EXP/distillation/<scene>/ (field.pth, turntable.mp4, heldout_views.mp4 / .png, metrics.json)
and EXP/distillation/metrics.json; rerunning skips finished scenes and resumes the others.
All keys: holo3d/sample/distill_config.py (DistillConfig).
"""

from holo3d.cli import distill_main

if __name__ == "__main__":
    distill_main()
