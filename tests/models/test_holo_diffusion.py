"""HoloDiffusionModel end to end on tiny synthetic batches (CPU)."""

import pytest
import torch
from pytorch3d.implicitron.models.base_model import ImplicitronModelBase
from pytorch3d.implicitron.models.renderer.base import EvaluationMode
from pytorch3d.implicitron.tools.config import get_default_args, registry

from holo3d.models import HoloDiffusionModel
from models_testdata import orbit_cameras, random_frame_batch, tiny_model

TRAIN, EVAL = EvaluationMode.TRAINING, EvaluationMode.EVALUATION


def _randomise_zero_params(model: torch.nn.Module) -> None:
    """Zero-initialised output layers would hide whether gradients reach the layers before them."""
    generator = torch.Generator().manual_seed(0)
    for p in model.parameters():
        if p.ndim > 1 and not p.detach().any():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)


def _check_log_vars(model, preds):
    for key in model.log_vars:
        assert key in preds, key
        assert preds[key].ndim == 0 and torch.isfinite(preds[key]), (key, preds[key])


def test_registered_and_configurable():
    assert registry.get(ImplicitronModelBase, "HoloDiffusionModel") is HoloDiffusionModel
    cfg = get_default_args(HoloDiffusionModel)
    assert cfg.n_targets == 6 and cfg.grid_resolution == 16 and cfg.feature_size == 64
    assert "in_channels" not in cfg.unet_args and "feature_size" not in cfg.lifter_args
    with pytest.raises(Exception, match="n_rays_per_targt"):
        cfg.n_rays_per_targt = 3  # misspelt keys fail and name the key


def test_training_forward_gives_gradients_to_every_parameter():
    torch.manual_seed(0)
    model = tiny_model(bootstrap_prob=0.0)
    _randomise_zero_params(model)
    preds = model(**random_frame_batch(2, 4), evaluation_mode=TRAIN, iteration=0)
    _check_log_vars(model, preds)
    assert preds["grid"].shape == (2, 8, 8, 8, 8) and not preds["grid"].requires_grad
    assert preds["implicitron_render"].image_render.shape == (1, 3, 64, 1)
    preds["objective"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, no_grad
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_bootstrap_pass_detaches_the_first_prediction():
    torch.manual_seed(0)
    batch = random_frame_batch(2, 3)
    for detach in (True, False):
        model = tiny_model(bootstrap_prob=1.0, bootstrap_detach_first=detach)
        _randomise_zero_params(model)
        preds = model(**batch, evaluation_mode=TRAIN)
        assert float(preds["bootstrapped"]) == 1.0
        preds["objective"].backward()
        lifter_grad = model.lifter.to_grid.weight.grad
        assert lifter_grad is not None  # kept in the graph (zero weight) for DDP
        assert (lifter_grad.abs().sum() > 0) == (not detach)
        assert model.unet.out[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("overrides", [{"use_diffusion": False}, {"use_diffusion": False, "use_unet": False}])
def test_baselines_train_and_evaluate(overrides):
    model = tiny_model(**overrides)
    assert (model.unet is None) == (not overrides.get("use_unet", True))
    batch = random_frame_batch(1, 3)
    preds = model(**batch, evaluation_mode=TRAIN)
    _check_log_vars(model, preds)
    preds["objective"].backward()
    with torch.no_grad():
        preds = model.eval()(**batch, evaluation_mode=EVAL)
    _check_log_vars(model, preds)


def test_evaluation_renders_full_target_frames():
    model = tiny_model(render_size_eval=16).eval()
    with torch.no_grad():
        preds = model(**random_frame_batch(2, 3, image_size=32), evaluation_mode=EVAL)
    _check_log_vars(model, preds)
    assert preds["images_render"].shape == (2, 1, 3, 16, 16)  # n_targets_eval = 1
    assert preds["images_gt"].shape == (2, 1, 3, 16, 16)
    assert preds["implicitron_render"].image_render.shape == (1, 3, 16, 16)
    assert preds["implicitron_render"].depth_render.shape == (1, 1, 16, 16)


def test_too_few_frames_is_a_clear_error():
    model = tiny_model()  # n_targets = 2
    assert model.min_frames_per_scene == 3
    with pytest.raises(ValueError, match=r"2 frames .* at least 3 \(2 targets \+ 1 source"):
        model(**random_frame_batch(2, 2), evaluation_mode=TRAIN)


def test_indivisible_grid_is_a_config_error():
    with pytest.raises(ValueError, match="divisible"):
        tiny_model(grid_resolution=6, **{"unet_args.channel_mult": [1, 2, 2]})


def test_non_finite_input_is_reported_with_the_iteration():
    batch = random_frame_batch(1, 3)
    batch["image_rgb"][-1, :, 10:20, 10:20] = float("nan")
    with pytest.raises(FloatingPointError, match="lifted grid V0.*iteration 7"):
        tiny_model()(**batch, evaluation_mode=TRAIN, iteration=7)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "heun", "euler"])
def test_sample_and_render_samples(sampler):
    model = tiny_model(num_diffusion_steps=20).eval()
    _randomise_zero_params(model)
    steps = None if sampler == "ddpm" else 3
    seen = []
    grids = model.sample(2, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0),
                         callback=lambda i, x, x0: seen.append(i))
    assert grids.shape == (2, 8, 8, 8, 8) and grids.abs().max() <= 1.0
    assert len(seen) == (20 if sampler == "ddpm" else 3)
    out = model.render_samples(grids, orbit_cameras(4), (12, 10), chunk_size=100)
    assert out["rgb"].shape == (2, 2, 3, 12, 10) and out["opacity"].shape == (2, 2, 1, 12, 10)
    assert torch.isfinite(out["rgb"]).all()


def test_sampling_is_refused_without_diffusion():
    with pytest.raises(RuntimeError, match="use_diffusion"):
        tiny_model(use_diffusion=False).sample(1)


def test_base_config_has_the_official_parameter_count():
    # Official HoloDiffusion base config: 186.8M parameters (U-Net ~165.2M, ResNet-34 ~21.3M, MLP).
    with torch.device("meta"):
        model = HoloDiffusionModel(**get_default_args(HoloDiffusionModel))
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 186.8e6) < 0.1e6, n_params


def test_training_step_under_bf16_autocast_with_channels_last_unet():
    model = tiny_model(bootstrap_prob=1.0)
    model.unet.to(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        preds = model(**random_frame_batch(2, 3), evaluation_mode=TRAIN)
    assert preds["grid"].dtype == torch.float32  # grids stay fp32 for world-coordinate look-ups
    assert torch.isfinite(preds["objective"])
    preds["objective"].backward()
