#!/usr/bin/env python
"""Train a holo3d model (also installed as ``holo3d-train``).

    python experiment.py --config-name base.yaml [key=value ...]
    python experiment.py --config-name demo.yaml lr=1e-3 epochs=2 image_size=64   # short keys
    python experiment.py --config-name base.yaml --multirun lr=1e-4,3e-4          # a sweep
    python experiment.py --help                                  # short keys + active settings
    accelerate launch --multi_gpu --num_processes 4 experiment.py --config-name base.yaml
    torchrun --standalone --nproc_per_node 4 experiment.py --config-name base.yaml

Every key is typed; a misspelt key or a wrong type stops before any work, with Hydra's reason and
the closest existing keys. Re-running with the same exp_dir resumes from its newest usable checkpoint.
"""

from holo3d.train.config_cli import main

if __name__ == "__main__":
    main()
