#!/usr/bin/env python
"""Few-view reconstructions of held-out sequences: renders, turntables and image metrics
(also installed as ``holo3d-reconstruct``).

    python visualize_reconstruction.py exp_dir=EXP n_source_views=K sequences=[seq_a,seq_b] split=test

Lifts K source views of each held-out sequence into a grid with the trained model, renders the other
views and a turntable, and writes EXP/reconstructions/ (metrics.json, side-by-side videos).
All keys: holo3d/sample/script_config.py (ReconstructionConfig).
"""

from holo3d.cli import reconstruct_main

if __name__ == "__main__":
    reconstruct_main()
