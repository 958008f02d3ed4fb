#!/usr/bin/env python
"""Few-view reconstructions of held-out sequences: renders, turntables and image metrics.

    python visualize_reconstruction.py exp_dir=EXP n_source_views=K sequences=[seq_a,seq_b] split=test

Lifts K source views of each held-out sequence into a grid with the trained model, renders the other
views and a turntable, and writes EXP/reconstructions/ (metrics.json, side-by-side videos).
All keys: holo3d/sample/script_config.py (ReconstructionConfig).
"""

import hydra

from holo3d.sample.script_config import register_script_configs
from holo3d.sample.script_runner import run_script

register_script_configs()


@hydra.main(config_path=None, config_name="visualize_reconstruction", version_base="1.3")
def main(cfg) -> None:
    run_script("holo3d.sample.reconstruct:visualize_reconstruction", cfg, "visualize_reconstruction.py")


if __name__ == "__main__":
    main()
