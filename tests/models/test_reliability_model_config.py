"""HoloDiffusion's config values are checked when the model is built and the error names the key
(issue 21, item 6: grid_resolution=0 and friends failed late with tracebacks naming no key)."""

import re

import pytest

from models_testdata import tiny_model


@pytest.mark.parametrize("key, value, expected", [
    ("grid_resolution", 0, "grid_resolution=0 (must be >= 1)"),
    ("feature_size", 0, "feature_size=0 (must be >= 1)"),
    ("n_rays_per_target", 0, "n_rays_per_target=0 (must be >= 1)"),
    ("num_diffusion_steps", 0, "num_diffusion_steps=0 (must be >= 1)"),
    ("volume_extent", -1.0, "volume_extent=-1.0 (must be > 0)"),
    ("mask_threshold", 1.5, "mask_threshold=1.5 (must be in [0, 1])"),
    ("beta_end", 0.0, "beta_start=0.0001, beta_end=0.0"),
    ("x0_loss_weight", -1.0, "x0_loss_weight=-1.0 (must be >= 0)"),
])
def test_bad_values_are_refused_at_config_time_naming_the_key(key, value, expected):
    with pytest.raises(ValueError, match="model_HoloDiffusionModel_args: .*" + re.escape(expected)):
        tiny_model(**{key: value})
