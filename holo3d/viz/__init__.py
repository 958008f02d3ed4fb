"""holo3d.viz: monitoring.

- ``logger_base.ExperimentLogger``: the interface the training loop logs through (null logger).
- ``logger_factory.make_logger(kind, exp_dir, **kwargs)``: "visdom" | "tensorboard" | "none".
- ``visdom_logger.VisdomLogger`` / ``tensorboard_logger.TensorBoardLogger``: the two backends.
- ``grid_visualization``: feature-grid PCA pictures, depth colouring, side-by-side panels.
- ``dashboard``: ``python -m holo3d.viz.dashboard`` (visdom on loopback, envs under exp/).
- ``install_static``: ``python -m holo3d.viz.install_static`` (visdom's UI files, offline start).

Nothing is imported here, so ``import holo3d.viz`` stays free of visdom / TensorBoard.
"""
