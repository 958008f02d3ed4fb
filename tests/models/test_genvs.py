"""GenvsModel (GeNVS): it learns on tiny built-in SRN cars, its sampling paths have the right shapes,
classifier-free guidance at scale 1 is the conditional model, scene codes round-trip, and it trains
through the unchanged Experiment on the genvs_demo config.

Data: 6 built-in cars x 8 views at 32 x 32 in SRN layout (4 train, 1 val, 1 test objects), written
once per module; one tiny model is trained once per module (module fixture) for the learning tests.
"""

import json
import math

import pytest
import torch
from pytorch3d.implicitron.models.renderer.base import EvaluationMode
from pytorch3d.implicitron.tools.config import expand_args_fields, get_default_args
from pytorch3d.renderer.camera_utils import join_cameras_as_batch

from holo3d.data.srn import SrnDatasetMapProvider
from holo3d.data.synthetic import SyntheticSpec, generate_dataset
from holo3d.data.synthetic.srn_writer import SrnWriter
from holo3d.diffusion import sample
from holo3d.models.genvs import GenvsModel, pack_scene, path_context, unpack_scene
from holo3d.models.protocol import GenerativeModel, ReconstructionModel

SPEC = SyntheticSpec(categories=("car",), sequences=6, frames=8, image_size=(32, 32), image_format="png")
HW = (32, 32)
TRAIN_STEPS = 40


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    """{"train" | "val" | "test": [[FrameData of one object's views], ...]}."""
    root = generate_dataset(SPEC, str(tmp_path_factory.mktemp("srn") / "root"), writer_factory=SrnWriter,
                            progress=False, fmt="srn")
    expand_args_fields(SrnDatasetMapProvider)
    datasets = SrnDatasetMapProvider(dataset_root=root, category="cars").get_dataset_map()
    out = {}
    for split in ("train", "val", "test"):
        dataset = getattr(datasets, split)
        by_object = {}
        for i in range(len(dataset)):
            frame = dataset[i]
            by_object.setdefault(frame.sequence_name, []).append(frame)
        out[split] = list(by_object.values())
    return out


def tiny_model(**fields) -> GenvsModel:
    expand_args_fields(GenvsModel)
    cfg = get_default_args(GenvsModel)
    cfg.update(image_size=32, latent_size=16, depth_bins=8, feature_channels=8, latent_channels=8,
               field_hidden_dim=32, cond_dim=16, steps_default=4)
    cfg.encoder_args.update(backbone="small", small_channels=16, decoder_channels=32)
    cfg.unet_args.update(model_channels=16, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[])
    cfg.renderer_args.update(n_pts_coarse=16, n_pts_fine=8)
    cfg.update(fields)
    return GenvsModel(**cfg)


def frame_batch(frames):
    """FrameData kwargs of a flat, scene-major list of frames."""
    return dict(image_rgb=torch.stack([f.image_rgb for f in frames]),
                fg_probability=torch.stack([f.fg_probability for f in frames]),
                camera=join_cameras_as_batch([f.camera for f in frames]),
                sequence_name=[f.sequence_name for f in frames])


def cameras_of(frames):
    return join_cameras_as_batch([f.camera for f in frames])


@pytest.fixture(scope="module")
def trained(objects):
    """(model, objectives per step): TRAIN_STEPS Adam steps on 4 scenes x (1 target + 1 input)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second OpenMP thread only spins (see conftest.py)
    torch.manual_seed(0)
    model, generator = tiny_model(), torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    objectives = []
    for _ in range(TRAIN_STEPS):
        frames = []
        for views in objects["train"]:
            pick = torch.randperm(len(views), generator=generator)[:2].tolist()
            frames += [views[i] for i in pick]  # target, then input view
        preds = model(**frame_batch(frames), evaluation_mode=EvaluationMode.TRAINING)
        optimizer.zero_grad()
        preds["objective"].backward()
        optimizer.step()
        objectives.append(float(preds["objective"].detach()))
    torch.set_num_threads(previous)
    return model.eval(), objectives


def test_the_loss_falls(trained):
    _, objectives = trained
    first, last = sum(objectives[:8]) / 8, sum(objectives[-8:]) / 8
    assert all(math.isfinite(v) for v in objectives)
    print("objective first / last 8 steps", first, last)
    assert last < 0.8 * first, (first, last)


def test_field_rgb_beats_a_constant_on_held_out_objects(trained, objects):
    """One input view (view 0) of each val / test object; the field's RGB render of the other views
    has a lower MSE than the best constant colour of the training images."""
    model, _ = trained
    train_images = torch.stack([f.image_rgb for views in objects["train"] for f in views])
    constant = train_images.mean(dim=(0, 2, 3))[:, None, None]  # (3, 1, 1)
    err_field, err_constant = [], []
    for views in objects["val"] + objects["test"]:
        scene = model.reconstruct_from_views(views[0].image_rgb[None, None], None, views[0].camera)
        targets = views[1:]
        rgb = model.render_samples(scene, cameras_of(targets), HW)["rgb"][0]  # (V, 3, H, W)
        gt = torch.stack([f.image_rgb for f in targets])
        err_field.append((rgb - gt).square().mean())
        err_constant.append((constant - gt).square().mean())
    field_mse, constant_mse = torch.stack(err_field).mean(), torch.stack(err_constant).mean()
    print("held-out MSE field / constant", float(field_mse), float(constant_mse))
    assert field_mse < 0.9 * constant_mse, (field_mse, constant_mse)


def test_guidance_scale_one_is_the_conditional_model(trained, objects):
    model, _ = trained
    views = objects["test"][0]
    scene = model.reconstruct_from_views(views[0].image_rgb[None, None], None, views[0].camera)
    latent = model.render_latents(scene, cameras_of(views[1:3]), (16, 16))["latent"]  # (2, C, h, w)
    guided = model.denoise_views(latent, 2, HW, sampler="heun", steps=4, guidance_scale=1.0,
                                 generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    torch.randn((2, model.latent_channels, *HW), generator=generator)  # the unconditional latent's draw
    cond = {"latent": model.upsample(latent, HW), "drop": torch.zeros(2)}
    x = sample("heun", model.edm.denoiser(model.raw_denoiser), (2, 3, *HW), model.edm.sigma_schedule, 4,
               generator=generator, cond=cond)
    torch.testing.assert_close(guided, ((x + 1) / 2).clamp(0, 1))
    stronger = model.denoise_views(latent, 2, HW, sampler="heun", steps=4, guidance_scale=3.0,
                                   generator=torch.Generator().manual_seed(3))
    assert (stronger - guided).abs().max() > 1e-3  # guidance changes the views


def test_samplers_give_views_of_the_right_shape(trained, objects):
    model, _ = trained
    views = objects["test"][0]
    scene = model.reconstruct_from_views(views[0].image_rgb[None, None], None, views[0].camera)
    targets = cameras_of(views[1:4])
    def draw(seed, **kw):
        return model.novel_views(scene, targets, HW, steps=4, generator=torch.Generator().manual_seed(seed), **kw)

    heun, heun_again = draw(0, sampler="heun"), draw(0, sampler="heun")
    euler, euler_other = draw(0, sampler="euler", S_churn=20.0), draw(1, sampler="euler", S_churn=20.0)
    for out in (heun, euler):
        assert out["images"].shape == out["field_rgb"].shape == (1, 3, 3, *HW)
        assert 0 <= float(out["images"].min()) and float(out["images"].max()) <= 1
    torch.testing.assert_close(heun["images"], heun_again["images"])  # deterministic given the seed
    assert (euler["images"] - euler_other["images"]).abs().max() > 1e-4  # stochastic
    for alias in ("ddim", "ddpm"):  # the generic callers' sampler names run as Euler
        assert draw(0, sampler=alias)["images"].shape == (1, 3, 3, *HW)


def test_autoregressive_path(trained, objects):
    model, _ = trained
    views = objects["test"][0]
    scene = model.reconstruct_from_views(views[0].image_rgb[None, None], None, views[0].camera)
    seen = []
    out = model.generate_path(scene, cameras_of(views[1:7]), HW, context_views=2, steps=3,
                              generator=torch.Generator().manual_seed(0), callback=lambda i, img: seen.append(i))
    assert out["images"].shape == out["field_rgb"].shape == (1, 6, 3, *HW)
    assert out["scene"].shape[:2] == (1, 7) and seen == list(range(6))
    # the grown scene's generated views are the encoded samples
    torch.testing.assert_close(out["scene"][:, :1], scene)


def test_path_context_keeps_inputs_previous_and_k_earlier():
    assert path_context(0, 1, 4) == [0]
    assert path_context(1, 1, 4) == [0, 1]  # input + previous generated view
    assert path_context(3, 2, 4) == [0, 1, 2, 3, 4]
    context = path_context(20, 1, 4)
    assert context[0] == 0 and context[-1] == 1 + 19 and len(context) == 1 + 4 + 1
    assert context[1] == 1 and context == sorted(set(context))  # the first generated view stays


def test_scene_codes_round_trip_and_render(objects):
    model = tiny_model()
    views = objects["train"][0][:3]
    cams = cameras_of(views)
    volumes = torch.randn(1, 3, *model.volume_shape)
    back, back_cams = unpack_scene(pack_scene(volumes, cams), model.volume_shape)
    torch.testing.assert_close(back, volumes)
    torch.testing.assert_close(back_cams.get_world_to_view_transform().get_matrix(),
                               cams.get_world_to_view_transform().get_matrix())
    torch.testing.assert_close(back_cams.get_projection_transform().get_matrix(),
                               cams.get_projection_transform().get_matrix())
    with pytest.raises(ValueError, match="numbers per view"):
        unpack_scene(torch.zeros(1, 1, 10), model.volume_shape)
    out = model.render_samples(pack_scene(volumes, cams), cameras_of(views[:2] * 1), (24, 24))
    assert out["rgb"].shape == (1, 2, 3, 24, 24) and out["opacity"].shape == (1, 2, 1, 24, 24)


def test_protocol_and_honest_sampling_without_inputs(objects):
    model = tiny_model()
    assert isinstance(model, GenerativeModel) and isinstance(model, ReconstructionModel)
    assert model.can_sample and model.scene_extent == 2.0
    scenes = model.sample(2, steps=2, generator=torch.Generator().manual_seed(0))  # from nothing
    assert scenes.shape[:2] == (2, 1)
    assert model.preview_frames(n_frames=2, image_size=16, steps=2).shape == (2, 3, 16, 16)
    views = objects["train"][0]
    cond = {"rgb": torch.stack([views[0].image_rgb])[None], "cameras": views[0].camera,
            "path_cameras": cameras_of(views[1:3])}
    assert model.sample(1, cond=cond, steps=2).shape[:2] == (1, 3)  # input + 2 path views
    blind_configs = (({"no_cond_prob": 0.0}, "no-conditioning token"), ({"denoiser_loss_weight": 0.0}, "field-only"))
    for fields, reason in blind_configs:
        blind = tiny_model(**fields)
        assert not blind.can_sample and reason in blind.cannot_sample_reason
        with pytest.raises(RuntimeError, match=reason):
            blind.sample(1)
    with pytest.raises(ValueError, match="denoise_from_t=5"):
        model.reconstruct_from_views(views[0].image_rgb[None, None], None, views[0].camera, denoise_from_t=5)


def test_bad_settings_name_the_key(objects):
    with pytest.raises(ValueError, match="near=3.0, far=2.0"):
        tiny_model(near=3.0, far=2.0)
    with pytest.raises(ValueError, match="sampler_default.*ddim2"):
        tiny_model(sampler_default="ddim2")
    model = tiny_model(near=0.5, far=1.5)  # the built-in cameras sit 2.3 - 3.3 from the origin
    views = objects["train"][0]
    with pytest.raises(ValueError, match="near=0.5 / far=1.5 do not bracket"):
        model(**frame_batch(views[:2]), evaluation_mode=EvaluationMode.TRAINING)


def test_evaluation_outputs_the_field_renders(objects):
    model = tiny_model().eval()
    views = objects["val"][0]
    with torch.no_grad():
        preds = model(**frame_batch(views[:2]), evaluation_mode=EvaluationMode.EVALUATION)
    assert preds["images_render"].shape == preds["images_gt"].shape == (1, 1, 3, *HW)
    assert preds["masks_render"].shape == preds["depths_render"].shape == (1, 1, 1, *HW)
    assert set(model.log_vars) <= set(preds)


@pytest.mark.filterwarnings("ignore:.*scenes repeat within a batch")  # 1 val and 1 test object
def test_trains_through_the_experiment_on_the_demo_config(objects, tmp_path):
    from holo3d.train.checkpoint import load_latest_checkpoint
    from holo3d.train.config_cli import compose_config
    from holo3d.train.experiment import Experiment

    root = objects["train"][0][0].image_path.split("/cars_train/")[0]
    data = "data_source_Holo3DDataSource_args"
    cfg = compose_config("genvs_demo", [
        f"exp_dir={tmp_path / 'exp'}",
        f"{data}.dataset_map_provider_SrnDatasetMapProvider_args.dataset_root={root}",
        f"{data}.dataset_map_provider_SrnDatasetMapProvider_args.category=cars",
        f"{data}.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args.dataset_length_train=2",
        f"{data}.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args.scenes_per_batch=2",
        "model_factory_HoloModelFactory_args.model_GenvsModel_args.image_size=32",
        "model_factory_HoloModelFactory_args.model_GenvsModel_args.latent_size=16",
        "training_loop_HoloTrainingLoop_args.max_epochs=1",
    ])
    Experiment(**cfg).run(cfg)
    assert load_latest_checkpoint(tmp_path / "exp")["iteration"] == 2

    # the unchanged scripts: sampling from nothing (an unconditional first view, lifted and shown on
    # a turntable) and few-view reconstruction of held-out objects (the field's renders, scored)
    from holo3d.sample.generate import generate_samples
    from holo3d.sample.reconstruct import visualize_reconstruction
    from holo3d.sample.script_config import ReconstructionConfig, SampleConfig

    exp = str(tmp_path / "exp")
    out = generate_samples(SampleConfig(exp_dir=exp, num_samples=1, sampler="heun", steps=2, render_size=[16, 16],
                                        video_size=[16, 16], n_frames=4, device="cpu",
                                        progressive_sampling_steps_per_render=1))
    assert {"sample_000.mp4", "sample_000_progressive.mp4", "contact_sheet.png"} <= {p.name for p in out.iterdir()}
    out = visualize_reconstruction(ReconstructionConfig(exp_dir=exp, n_source_views=1, max_target_views=2,
                                                        video_size=[16, 16], n_frames=4, device="cpu"))
    report = json.loads((out / "metrics.json").read_text())
    assert report["mean"]["psnr"] > 0


def test_gpu_run_script_tiny_mode_writes_metrics_and_sheet(objects, tmp_path):
    from holo3d.bench.genvs_run import main

    root = objects["train"][0][0].image_path.split("/cars_train/")[0]
    assert main(["--tiny", "--out", str(tmp_path / "run"), "--data-root", root]) == 0
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["contact_sheet.png", "metrics.json"]
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["training"]["steps"] >= 2 and report["training"]["train_images_per_s"] > 0
    for name in ("field_rgb", "heun", "euler_churn"):
        assert set(report["heldout"][name]) >= {"psnr", "ssim", "sharpness_ratio"}
        assert report["heldout_live_weights"][name]["psnr"] > 0  # the EMA is evaluated beside the live weights
    assert {"denoiser_step_batch1_s", "denoiser_step_batch16_s"} <= set(report["speed"])
