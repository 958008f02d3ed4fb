#!/usr/bin/env python
"""Train a holo3d model.

    python experiment.py --config-name base.yaml [key=value ...]
    accelerate launch --multi_gpu --num_processes 4 experiment.py --config-name base.yaml
    torchrun --standalone --nproc_per_node 4 experiment.py --config-name base.yaml

Every key is typed; a misspelt key or a wrong type stops before any work and names the key.
Re-running with the same exp_dir resumes from its newest usable checkpoint.
"""

import sys

import hydra
from omegaconf import DictConfig

from holo3d.train.config_cli import (
    CONFIG_DIR,
    build_experiment_or_exit,
    check_config_or_exit,
    register_default_config,
)

register_default_config()


@hydra.main(config_path=str(CONFIG_DIR), config_name="base", version_base="1.3")
def main(cfg: DictConfig) -> None:
    build_experiment_or_exit(cfg).run(cfg)


if __name__ == "__main__":
    check_config_or_exit(sys.argv[1:])
    main()
