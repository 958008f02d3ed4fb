"""ViewFusionModel: composition (permutation invariance, exactly-zero padding weights), learning on
tiny built-in NMR data, sampling with any number of views, the autoregressive turntable, the
training-loop contract and the GPU run script's --tiny mode."""

import dataclasses

import pytest
import torch
from pytorch3d.implicitron.models.renderer.base import EvaluationMode
from pytorch3d.implicitron.tools.config import expand_args_fields, get_default_args

from holo3d.data.nmr import load_nmr_dataset_map
from holo3d.data.synthetic.generate import generate_dataset
from holo3d.data.synthetic.spec import get_preset
from holo3d.data.synthetic.writers import get_writer
from holo3d.models.protocol import GenerativeModel, OutputKind
from holo3d.models.view_fusion import ViewFusionModel, angle_features, compose_views, pair_packing

SIZE = 16


def tiny_model(seed: int = 0, **overrides) -> ViewFusionModel:
    """A two-level U-Net at 16 px; the zero-initialised output conv is randomised so that the
    per-view outputs differ (a fresh model predicts zeros everywhere)."""
    expand_args_fields(ViewFusionModel)
    cfg = get_default_args(ViewFusionModel)
    cfg.image_size = SIZE
    cfg.test_num_steps, cfg.test_beta_start, cfg.test_beta_end, cfg.steps_default = 50, 1e-3, 0.3, 4
    cfg.unet_args.update(model_channels=16, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[8])
    for key, value in overrides.items():
        cfg[key] = value
    torch.manual_seed(seed)
    model = ViewFusionModel(**cfg)
    with torch.no_grad():
        out_conv = model.unet.net.out[-1]
        out_conv.weight.normal_(0, 0.05)
        out_conv.bias.normal_(0, 0.05)
    return model.eval()


def random_inputs(b: int, v: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {"x_t": torch.randn(b, 3, SIZE, SIZE, generator=g), "gamma": torch.rand(b, generator=g),
            "views": torch.rand(b, v, 3, SIZE, SIZE, generator=g) * 2 - 1,
            "features": angle_features(torch.rand(b, 2, generator=g), torch.rand(b, v, 2, generator=g), "relative")}


# ----------------------------------------------------------------------------- composition


@torch.no_grad()
def test_composition_is_invariant_to_the_order_of_the_conditioning_views():
    model = tiny_model()
    x = random_inputs(2, 4)
    mask = torch.ones(2, 4, dtype=torch.bool)
    eps, weights = model.composed_eps(x["x_t"], x["gamma"], x["views"], x["features"], mask)
    perm = torch.tensor([2, 0, 3, 1])
    eps_perm, weights_perm = model.composed_eps(x["x_t"], x["gamma"], x["views"][:, perm], x["features"][:, perm], mask)
    torch.testing.assert_close(eps_perm, eps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights_perm, weights[:, perm], atol=1e-5, rtol=1e-5)
    assert weights.std(dim=1).mean() > 1e-4  # the views really get different weights



def test_pair_packing_pads_the_real_pairs_to_the_bucket_and_runs_everything_when_that_is_no_cheaper():
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)  # 6 of 12 real
    packing = pair_packing(mask, bucket=4)
    assert packing.real == 6 and packing.index.shape == (8,)
    assert packing.index[:6].tolist() == [0, 4, 5, 6, 8, 9]  # the real pairs first, in order
    assert set(packing.index[6:].tolist()) <= set(packing.index[:6].tolist())  # padding repeats real pairs
    assert pair_packing(mask, bucket=1).index.shape == (6,)
    assert pair_packing(mask, bucket=12).index is None  # padded to all 12 pairs: run them all
    assert pair_packing(torch.ones(2, 3, dtype=torch.bool), bucket=1).index is None


@torch.no_grad()
def test_the_composed_prediction_does_not_depend_on_the_packing():
    model = tiny_model()
    x = random_inputs(3, 4)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    outs = [model.composed_eps(x["x_t"], x["gamma"], x["views"], x["features"], mask, pair_packing(mask, bucket))[0]
            for bucket in (1, 4, 12)]  # packed exactly, padded to 8, every pair run
    for other in outs[1:]:
        torch.testing.assert_close(other, outs[0], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_padding_views_have_exactly_zero_weight_and_their_content_changes_nothing():
    model = tiny_model()
    x = random_inputs(3, 4)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    eps, weights = model.composed_eps(x["x_t"], x["gamma"], x["views"], x["features"], mask)
    assert torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones_like(eps))
    assert torch.all(weights[0, 0] == 1)  # a single real view takes all the weight
    other = x["views"].clone()
    other[~mask] = torch.randn_like(other[~mask]) * 100
    eps_other, _ = model.composed_eps(x["x_t"], x["gamma"], other, x["features"], mask)
    assert torch.equal(eps_other, eps)
    # the sample with 1 real view equals that view's prediction alone
    eps_alone, _ = model.composed_eps(x["x_t"][:1], x["gamma"][:1], x["views"][:1, :1], x["features"][:1, :1],
                                      mask[:1, :1])
    torch.testing.assert_close(eps_alone, eps[:1], atol=1e-5, rtol=1e-5)


def test_no_weighting_ablation_is_the_mean_of_the_real_views():
    eps_views = torch.randn(2, 3, 3, 4, 4)
    logits = torch.randn(2, 3, 3, 4, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    eps, weights = compose_views(eps_views, logits, mask, weighting=False)
    torch.testing.assert_close(eps[0], eps_views[0, :2].mean(0))
    torch.testing.assert_close(eps[1], eps_views[1].mean(0))
    assert torch.all(weights[0, 2] == 0)


def test_absolute_angles_ignore_the_conditioning_views_angles():
    target, views = torch.rand(2, 2), torch.rand(2, 3, 2)
    absolute = angle_features(target, views, "absolute")
    assert torch.equal(absolute, angle_features(target, torch.rand(2, 3, 2), "absolute"))
    relative = angle_features(target, views, "relative")
    torch.testing.assert_close(relative[..., :2], (target[:, None] - views).sin())


# ----------------------------------------------------------------------------- learning


def tiny_nmr_images(root):
    """The tiny built-in preset in NMR format at 16 px: (O, V, 3, H, W) images and (O, V, 2) angles."""
    spec = dataclasses.replace(get_preset("tiny"), image_size=(SIZE, SIZE), categories=("chair",))
    generate_dataset(spec, str(root), writer_factory=get_writer("nmr"), progress=False, preset="tiny", fmt="nmr")
    dataset = load_nmr_dataset_map(str(root)).train
    frames = [[dataset[i] for i in dataset.sequence_indices_in_order(n)] for n in dataset.sequence_names()]
    images = torch.stack([torch.stack([f.image_rgb for f in obj]) for obj in frames])
    angles = torch.stack([torch.stack([f.meta["view_azimuth_elevation"] for f in obj]) for obj in frames])
    return images, angles.float()


def batch_of(images, angles, generator, frames=4):
    order = torch.rand(images.shape[:2], generator=generator).argsort(1)[:, :frames]
    obj = torch.arange(images.shape[0])[:, None]
    return {"image_rgb": images[obj, order].flatten(0, 1),
            "meta": {"view_azimuth_elevation": angles[obj, order].flatten(0, 1)},
            "sequence_name": [f"o{o}" for o in range(images.shape[0]) for _ in range(frames)]}


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_falls_on_tiny_builtin_nmr_data(tmp_path, prediction):
    images, angles = tiny_nmr_images(tmp_path / "nmr")
    model = tiny_model(max_views=3, prediction=prediction).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    eval_batch = batch_of(images, angles, torch.Generator().manual_seed(0))

    def fixed_loss():
        torch.manual_seed(123)  # the same gammas, noise and view masks each time
        with torch.no_grad():
            return float(model(**eval_batch, evaluation_mode=EvaluationMode.TRAINING)["objective"])

    before = fixed_loss()
    generator = torch.Generator().manual_seed(1)
    for step in range(40):
        out = model(**batch_of(images, angles, generator), evaluation_mode=EvaluationMode.TRAINING, iteration=step)
        optimizer.zero_grad()
        out["objective"].backward()
        optimizer.step()
    after = fixed_loss()
    assert after < 0.7 * before, (before, after)


# ----------------------------------------------------------------------------- the model contract


def test_forward_with_cameras_returns_every_log_var_in_both_modes():
    from models_testdata import random_frame_batch

    model = tiny_model()
    batch = random_frame_batch(n_scenes=2, n_frames=5, image_size=SIZE)
    for mode in (EvaluationMode.TRAINING, EvaluationMode.EVALUATION):
        out = model(**batch, evaluation_mode=mode)
        assert set(model.log_vars) <= set(out) and out["objective"].ndim == 0
    assert float(model(**batch, evaluation_mode=EvaluationMode.EVALUATION)["mean_views"]) == 4.0
    assert model.min_frames_per_scene == 2



def test_compile_model_compiles_the_packed_unet_call_only(monkeypatch):
    """The training loop's compile_model compiles denoise_pairs: the view mask, the packing and its
    host reads stay eager, and the compiled call gets one batch size per pair_bucket multiple."""
    from models_testdata import random_frame_batch

    import holo3d.train.step as step_module

    model = tiny_model(pair_bucket=4).train()
    assert model.compile_target() == model.denoise_pairs
    compiled, sizes = [], []

    def fake_compile(target, **kwargs):
        compiled.append(target)

        def wrapper(pairs, levels):
            sizes.append(pairs.shape[0])
            return target(pairs, levels)

        return wrapper

    monkeypatch.setattr(step_module.torch, "compile", fake_compile)
    forward = step_module.compiled_training_forward(model)
    torch.manual_seed(0)
    for _ in range(6):
        out = forward(random_frame_batch(n_scenes=3, n_frames=5, image_size=SIZE))
        assert torch.isfinite(out["objective"])
    assert compiled == [model.denoise_pairs] and "denoise_pairs" not in vars(model)
    assert len(sizes) == 6 and all(size % 4 == 0 for size in sizes)  # buckets of 4 (all 3 x 4 pairs is one)



@pytest.mark.slow
def test_compiled_training_forward_matches_eager():
    """A real torch.compile of denoise_pairs (inductor, on the CPU): the same objective as eager under
    the same seed, and gradients reach the U-Net."""
    from models_testdata import random_frame_batch

    from holo3d.train.step import compiled_training_forward

    model = tiny_model(pair_bucket=4).train()
    batch = random_frame_batch(n_scenes=3, n_frames=5, image_size=SIZE)
    torch.manual_seed(5)
    eager = model(**batch, evaluation_mode=EvaluationMode.TRAINING)["objective"]
    torch.manual_seed(5)
    compiled = compiled_training_forward(model)(batch)["objective"]
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    compiled.backward()
    assert float(model.unet.net.out[-1].weight.grad.abs().sum()) > 0


def test_protocol_and_honest_can_sample():
    model = tiny_model()
    assert isinstance(model, GenerativeModel) and model.output_kind == OutputKind.IMAGES
    assert model.scene_extent == 0 and not model.can_sample and "input views" in model.cannot_sample_reason
    frames = model.render_samples(torch.rand(2, 3, SIZE, SIZE), None, (32, 32))["rgb"]
    assert frames.shape == (2, 1, 3, 32, 32)


def test_bad_config_and_bad_cond_name_the_key():
    with pytest.raises(ValueError, match="angle_mode"):
        tiny_model(angle_mode="sideways")
    with pytest.raises(ValueError, match="sampler"):
        tiny_model(sampler_default="nope")
    with pytest.raises(ValueError, match="target_angles"):
        tiny_model().sample(1, cond={"views": torch.rand(1, 2, 3, SIZE, SIZE), "view_angles": torch.rand(1, 2, 2)})
    with pytest.raises(ValueError, match="view_angles"):
        tiny_model().sample(1, cond={"views": torch.rand(1, 2, 3, SIZE, SIZE), "view_angles": torch.rand(1, 3, 2),
                                     "target_angles": torch.rand(1, 2)})


def test_trains_through_the_experiment_on_nmr_data_and_generate_samples_says_why_not(tmp_path):
    from holo3d.sample.input_checks import ExperimentLoadError
    from holo3d.sample.generate import generate_samples
    from holo3d.sample.script_config import SampleConfig
    from holo3d.train.checkpoint import load_latest_checkpoint
    from holo3d.train.config_cli import compose_config
    from holo3d.train.experiment import Experiment

    root = tmp_path / "nmr"
    tiny_nmr_images(root)
    data = "data_source_Holo3DDataSource_args."
    loader = "data_loader_map_provider_MultiSceneDataLoaderMapProvider_args."
    model = "model_factory_HoloModelFactory_args.model_ViewFusionModel_args."
    loop = "training_loop_HoloTrainingLoop_args."
    cfg = compose_config("viewfusion_nmr", [
        f"exp_dir={tmp_path / 'exp'}", f"{data}dataset_map_provider_NmrDatasetMapProvider_args.dataset_root={root}",
        f"{data}{loader}scenes_per_batch=2", f"{data}{loader}frames_per_scene=4",
        f"{data}{loader}dataset_length_train=3",
        f"{data}{loader}dataset_length_val=1", f"{data}{loader}num_workers=0", f"{data}{loader}pin_memory=false",
        f"{model}image_size={SIZE}", f"{model}unet_args.model_channels=16", f"{model}unet_args.channel_mult=[1,2]",
        f"{model}unet_args.num_res_blocks=1", f"{model}unet_args.attention_resolutions=[8]",
        f"{loop}max_epochs=1", f"{loop}mixed_precision=no", f"{loop}logger=none", f"{loop}ema_decay=0.9",
    ])
    Experiment(**cfg).run(cfg)
    assert load_latest_checkpoint(tmp_path / "exp")["iteration"] == 3
    with pytest.raises(ExperimentLoadError, match="input views"):
        generate_samples(SampleConfig(exp_dir=str(tmp_path / "exp"), num_samples=1, device="cpu"))


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("n_views", [1, 3])
@pytest.mark.parametrize("sampler,steps", [("ddim", 3), ("ddpm", None), ("dpmpp_2m", 3)])
def test_sampling_shapes_with_any_number_of_views(n_views, sampler, steps):
    model = tiny_model()
    cond = {"views": torch.rand(2, n_views, 3, SIZE, SIZE), "view_angles": torch.rand(2, n_views, 2),
            "target_angles": torch.rand(2, 2)}
    out = model.sample(2, cond=cond, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, SIZE, SIZE) and out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


def test_sampling_mixes_view_counts_with_a_mask_and_is_reproducible():
    model = tiny_model()
    cond = {"views": torch.rand(2, 3, 3, SIZE, SIZE), "view_angles": torch.rand(2, 3, 2),
            "target_angles": torch.rand(2, 2), "view_mask": torch.tensor([[1, 0, 0], [1, 1, 1]], dtype=torch.bool)}
    first = model.sample(2, cond=cond, steps=3, generator=torch.Generator().manual_seed(0))
    again = model.sample(2, cond=cond, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, again)
    alone = {k: v[:1, :1] if k != "target_angles" else v[:1] for k, v in cond.items()}
    single = model.sample(1, cond=alone, steps=3, generator=torch.Generator().manual_seed(0))
    assert single.shape == (1, 3, SIZE, SIZE)


def test_autoregressive_turntable_grows_the_conditioning_set():
    model = tiny_model()
    seen = []
    original = model.sample

    def spy(n, *, cond, **kwargs):
        seen.append(cond["views"].shape[1])
        return original(n, cond=cond, **kwargs)

    model.sample = spy
    frames = model.turntable(torch.rand(2, 1, 3, SIZE, SIZE), torch.rand(2, 1, 2), torch.rand(2, 5, 2), steps=2)
    assert frames.shape == (2, 5, 3, SIZE, SIZE)
    assert seen == [1, 2, 3, 4, 5]
    seen.clear()
    model.turntable(torch.rand(1, 2, 3, SIZE, SIZE), torch.rand(1, 2, 2), torch.rand(1, 4, 2), steps=2,
                    max_cond_views=3)
    assert seen == [2, 3, 3, 3]


def test_view_weights_are_per_view_maps_summing_to_one():
    model = tiny_model()
    cond = {"views": torch.rand(1, 3, 3, SIZE, SIZE), "view_angles": torch.rand(1, 3, 2),
            "target_angles": torch.rand(1, 2)}
    weights = model.view_weights(cond, torch.rand(1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(0))
    assert weights.shape == (1, 3, SIZE, SIZE)
    torch.testing.assert_close(weights.sum(1), torch.ones(1, SIZE, SIZE))


# ----------------------------------------------------------------------------- the GPU run script


@pytest.mark.slow
def test_run_script_tiny_mode_writes_metrics_and_pictures(tmp_path):
    from holo3d.bench.viewfusion_run import main

    report = main(["--tiny", "--minutes", "0.4", "--out", str(tmp_path), "--device", "cpu"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "samples.png", "turntable.png",
                                                          "weights.png"]
    assert report["training"]["steps"] > 10
    for k in (1, 3, 6):
        assert report["evaluation"][f"views_{k}"]["psnr"] > 0
    assert report["turntable"]["generated"] == report["turntable"]["views"] - 1
