"""Image panels of a model's evaluation output: target | render | depth | opacity, and the grid.

Works on the evaluation-mode output of grid models (``images_gt``, ``images_render``,
``depths_render``, ``masks_render``, each (S, T, C, H, W), and ``grid`` (S, F, D, H, W)); falls back
to ``implicitron_render`` for any other ImplicitronModelBase.
"""

from typing import Any, Dict

import torch

from holo3d.viz.grid_visualization import depth_to_image, feature_grid_pca_image, side_by_side, to_rgb


def prediction_panels(preds: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Named (3, H, W) images in [0, 1] for the dashboard."""
    panels: Dict[str, torch.Tensor] = {}
    if "images_render" in preds:
        render = preds["images_render"][0, 0].float().cpu()  # (3, H, W)
        opacity = preds["masks_render"][0, 0].float().cpu()  # (1, H, W)
        row = [preds["images_gt"][0, 0].float().cpu(), render,
               depth_to_image(preds["depths_render"][0, 0].float().cpu(), mask=opacity > 0.5),
               to_rgb(opacity.clamp(0, 1))]
        panels["target | render | depth | opacity"] = side_by_side(row)
    elif preds.get("implicitron_render") is not None and preds["implicitron_render"].image_render is not None:
        panels["render"] = preds["implicitron_render"].image_render[0].float().cpu().clamp(0, 1)
    if preds.get("grid") is not None:
        panels["feature grid (PCA, slices)"] = feature_grid_pca_image(preds["grid"][0].float().cpu())
    return panels
