"""SparseFusion-style distillation (holo3d/sample/distillation.py, distill.py, holo3d/bench/distill_run.py).

The optimisation is tested with a stand-in denoiser that returns the ground-truth view of the camera
it is asked about: the distilled field's held-out PSNR must rise well above its initial value. The
scene is a coloured ellipsoid rendered with PyTorch3D (20 px, 12 views on a wobbling orbit, white
background). The GeNVS adapter, the driver (outputs, skipping finished scenes) and the GPU script run
end to end on a tiny GeNVS experiment trained for 2 iterations on built-in SRN cars.
"""

import json
import math

import pytest
import torch
from omegaconf import OmegaConf
from pytorch3d.renderer import (
    AmbientLights,
    BlendParams,
    HardPhongShader,
    MeshRasterizer,
    MeshRenderer,
    PerspectiveCameras,
    RasterizationSettings,
    TexturesVertex,
    look_at_view_transform,
)
from pytorch3d.structures import Meshes
from pytorch3d.utils import ico_sphere

from sample_testdata import error_lines, run_script
from holo3d.eval import psnr
from holo3d.sample import distillation as D
from holo3d.sample.distill_config import DistillConfig
from holo3d.sample.input_checks import SettingsError

SIZE, N_VIEWS = 20, 12
WHITE = (1.0, 1.0, 1.0)
TINY_FIELD = dict(views_per_iteration=2, grid_type="FullResolutionVoxelGrid", grid_resolution=16, grid_features=8,
                  hidden_dim=32, n_pts_coarse=16, n_pts_fine=8, input_rays=128, lr=0.05, lr_mlp=0.01)


@pytest.fixture(scope="module")
def scene():
    """rgb (N, 3, H, W), fg, z-depth (N, 1, H, W) and N cameras of a coloured ellipsoid."""
    azim = torch.linspace(0, 360, N_VIEWS + 1)[:N_VIEWS]
    elev = 15.0 + 20.0 * torch.sin(torch.arange(N_VIEWS, dtype=torch.float32) * 1.3)
    R, T = look_at_view_transform(dist=3.0, elev=elev, azim=azim)
    cameras = PerspectiveCameras(focal_length=2.5, R=R, T=T)
    sphere = ico_sphere(2)
    verts = sphere.verts_packed() * torch.tensor([0.7, 0.5, 0.6])
    mesh = Meshes([verts], [sphere.faces_packed()], TexturesVertex([(sphere.verts_packed() + 1) / 2]))
    rasterizer = MeshRasterizer(cameras, RasterizationSettings(image_size=SIZE, faces_per_pixel=1))
    renderer = MeshRenderer(rasterizer, HardPhongShader(cameras=cameras, lights=AmbientLights(),
                                                        blend_params=BlendParams(background_color=WHITE)))
    with torch.no_grad():
        rgba = renderer(mesh.extend(N_VIEWS))  # (N, H, W, 4)
        zbuf = rasterizer(mesh.extend(N_VIEWS)).zbuf[..., :1].permute(0, 3, 1, 2)  # (N, 1, H, W)
    fg = (rgba[..., 3:] > 0).float().permute(0, 3, 1, 2)
    return {"rgb": rgba[..., :3].permute(0, 3, 1, 2).clamp(0, 1), "fg": fg, "depth": zbuf.clamp_min(0),
            "cameras": cameras}


class GroundTruthDenoiser(D.ViewConditionedDenoiser):
    """The stand-in: every 'clean' view is the ground truth of the nearest scene camera."""

    def __init__(self, scene):
        self.rgb, self.centres = scene["rgb"], scene["cameras"].get_camera_center()
        self.calls = []

    def _gt(self, cameras):
        return self.rgb[torch.cdist(cameras.get_camera_center(), self.centres).argmin(1)]

    def condition(self, rgb, fg, cameras):
        return "cond"

    def denoise_to_clean(self, render_rgb, sigma, target_cameras, cond, *, steps, sampler, generator=None):
        assert cond == "cond" and render_rgb.shape[0] == len(target_cameras) and not render_rgb.requires_grad
        self.calls.append(sigma)
        return self._gt(target_cameras)

    def regression_render(self, cond, cameras, image_hw):
        rgb = self._gt(cameras)
        return {"rgb": rgb, "depth": torch.zeros_like(rgb[:, :1]), "opacity": torch.zeros_like(rgb[:, :1])}

    def independent_samples(self, cond, cameras, image_hw, *, steps, sampler, generator=None):
        return self._gt(cameras)


def scene_views(scene, n_inputs=2) -> D.SceneViews:
    inputs, held = D.split_scene_views(N_VIEWS, n_inputs, seed=0, max_heldout=0)
    cams = scene["cameras"]
    return D.SceneViews(scene["rgb"][inputs], scene["fg"][inputs], cams[inputs], scene["rgb"][held],
                        scene["fg"][held], cams[held], cams, WHITE, inputs)


def heldout_psnr(renderer, views) -> float:
    return float(psnr(D.render_field(renderer, views.heldout_cameras, views.image_hw, 2**14)["rgb"],
                      views.heldout_rgb).mean())


def test_distilling_a_ground_truth_denoiser_raises_heldout_psnr(scene, tmp_path):
    views = scene_views(scene)
    cfg = DistillConfig(iterations=80, checkpoint_every=1000, **TINY_FIELD)
    torch.manual_seed(0)
    renderer = D.build_field_renderer(cfg, 2.0, WHITE)
    before = heldout_psnr(renderer, views)
    denoiser = GroundTruthDenoiser(scene)
    run = D.distill_scene(renderer, denoiser, views, cfg, seed=0, checkpoint=tmp_path / "field.pth",
                          progress_bar=False)
    after = heldout_psnr(renderer, views)
    assert run["iterations"] == 80 and after > before + 5.0, (before, after)
    assert len(denoiser.calls) == 80 and max(denoiser.calls[:10]) > 2 * max(denoiser.calls[-10:])  # annealed
    state = torch.load(tmp_path / "field.pth", weights_only=True)
    assert state["iteration"] == 80 and state["input_frames"] == views.input_frames

    evaluation = D.evaluate_scene(renderer, denoiser, views, cfg, 2**14, 2.0, torch.Generator().manual_seed(0))
    distilled = evaluation["metrics"]["distilled"]
    assert set(distilled) >= {"psnr", "ssim", "psnr_fg", "consistency_l1"}
    assert abs(float(distilled["psnr"].mean()) - after) < 1e-3
    assert float(distilled["consistency_l1"].nanmean()) < 0.1
    assert torch.isnan(evaluation["metrics"]["regression"]["consistency_l1"]).all()  # opacity 0: nothing valid


def test_a_checkpoint_resumes_where_it_stopped(scene, tmp_path):
    views, path = scene_views(scene), tmp_path / "field.pth"
    cfg = DistillConfig(iterations=3, checkpoint_every=2, **TINY_FIELD)
    first = D.build_field_renderer(cfg, 2.0, WHITE)
    D.distill_scene(first, GroundTruthDenoiser(scene), views, cfg, seed=0, checkpoint=path, progress_bar=False)
    longer = DistillConfig(iterations=5, checkpoint_every=2, **TINY_FIELD)
    second, denoiser = D.build_field_renderer(cfg, 2.0, WHITE), GroundTruthDenoiser(scene)
    run = D.distill_scene(second, denoiser, views, longer, seed=0, checkpoint=path, progress_bar=False)
    assert run["iterations"] == 5 and len(denoiser.calls) == 2  # resumed at 3, ran 2 more
    assert torch.load(path, weights_only=True)["iteration"] == 5



def test_a_warm_start_regresses_onto_the_render_first_then_anneals_from_the_top(scene):
    views = scene_views(scene)
    cfg = DistillConfig(iterations=8, warm_start=0.5, checkpoint_every=1000, sigma_max_start=4.0,
                        sigma_max_end=0.5, sigma_min=0.05, **TINY_FIELD)
    renderer, denoiser = D.build_field_renderer(cfg, 2.0, WHITE), GroundTruthDenoiser(scene)
    D.distill_scene(renderer, denoiser, views, cfg, seed=0, progress_bar=False)
    assert len(denoiser.calls) == 4  # iterations 0..3 regressed onto regression_render, no denoising
    generator = torch.Generator().manual_seed(0)
    out = D.distillation_step(renderer, denoiser, "cond", views, D.InputRays(views), D.CameraDistribution(views, cfg),
                              cfg, 0.49, generator)
    assert float(out["sigma"]) == 0.0 and float(out["weight"]) == 1.0 and len(denoiser.calls) == 4
    # just past the warm start the noise range is back at its top: (0.5 - 0.5) / (1 - 0.5) = 0
    draws = [float(D.distillation_step(renderer, denoiser, "cond", views, D.InputRays(views),
                                       D.CameraDistribution(views, cfg), cfg, 0.5, generator)["sigma"])
             for _ in range(20)]
    assert max(draws) > D.sigma_range(0.5, cfg)[1] and max(draws) <= 4.0
    with pytest.raises(SettingsError, match="warm_start=1.0"):
        D.check_settings(DistillConfig(warm_start=1.0))


def test_annealed_noise_range_and_time_dependent_weight():
    cfg = DistillConfig(sigma_max_start=4.0, sigma_max_end=0.5, sigma_min=0.05)
    assert D.sigma_range(0.0, cfg) == pytest.approx((0.05, 4.0))
    assert D.sigma_range(1.0, cfg) == pytest.approx((0.05, 0.5))
    assert D.sigma_range(0.5, cfg)[1] == pytest.approx(math.sqrt(4.0 * 0.5))  # log-linear
    generator = torch.Generator().manual_seed(0)
    draws = [D.draw_sigma(0.9, cfg, generator) for _ in range(200)]
    assert 0.05 <= min(draws) and max(draws) <= D.sigma_range(0.9, cfg)[1]
    weights = [D.distill_weight(s, 0.5, 1.0) for s in (0.05, 0.5, 5.0)]
    assert weights[0] > weights[1] > weights[2] and weights[1] == pytest.approx(0.5)
    assert D.distill_weight(3.0, 0.5, 0.0) == 1.0


def test_sphere_cameras_look_at_the_object_from_the_scene_distance(scene):
    views = scene_views(scene)
    cfg = DistillConfig(camera_distribution="sphere", sphere_elevation_deg=[10.0, 40.0])
    cams = D.CameraDistribution(views, cfg).draw(16, torch.Generator().manual_seed(0))
    centres = cams.get_camera_center()
    assert len(cams) == 16 and torch.allclose(centres.norm(dim=-1), torch.full((16,), 3.0), atol=1e-4)
    origin_in_view = cams.get_world_to_view_transform().transform_points(torch.zeros(16, 1, 3))
    assert torch.allclose(origin_in_view[:, 0, :2], torch.zeros(16, 2), atol=1e-4)  # on the optical axis
    assert centres.std(dim=0).min() > 0.1  # spread around, not one camera


def test_reprojection_error_is_small_for_consistent_views_only(scene):
    rgb, depth, fg, cams = scene["rgb"], scene["depth"], scene["fg"], scene["cameras"]
    consistent = D.reprojection_error(rgb, depth, fg, cams, tolerance=0.1)
    shuffled = D.reprojection_error(rgb.roll(1, dims=0), depth, fg, cams, tolerance=0.1)  # views disagree
    torch.manual_seed(0)
    noisy = (rgb + 0.3 * torch.randn_like(rgb)).clamp(0, 1)
    assert consistent.shape == (N_VIEWS,) and float(consistent.nanmean()) < 0.05
    assert float(shuffled.nanmean()) > 3 * float(consistent.nanmean())
    assert float(D.reprojection_error(noisy, depth, fg, cams, tolerance=0.1).nanmean()) > 0.1
    assert D.nearest_neighbours(cams)[0] in (1, N_VIEWS - 1)


def test_bad_settings_are_refused_before_any_work(tmp_path):
    with pytest.raises(SettingsError, match="n_input_views=1"):
        D.check_settings(DistillConfig(n_input_views=1))
    with pytest.raises(SettingsError, match=r"iterations=0.*camera_distribution='ring'.*sampler='ddpm'"):
        D.check_settings(DistillConfig(iterations=0, camera_distribution="ring", sampler="ddpm"))
    with pytest.raises(SettingsError, match="sigma_min"):
        D.check_settings(DistillConfig(sigma_max_start=0.5, sigma_max_end=2.0))
    with pytest.raises(SettingsError, match="n_input_views=12"):
        D.split_scene_views(12, 12, seed=0)
    # the entry point: one line naming the key, exit status 2, before the experiment is even loaded
    exp = tmp_path / "exp"
    (exp / "checkpoints").mkdir(parents=True)
    (exp / "checkpoints" / "epoch_00000.pth").write_bytes(b"")
    result = run_script("distill.py", f"exp_dir={exp}", "n_input_views=1")
    assert result.returncode == 2, result.stderr[-2000:]
    assert error_lines(result) == ["distill.py: error: invalid settings: n_input_views=1 (distillation needs "
                                   "K >= 2 input views)"]
    assert not (exp / "distillation").exists()


def test_split_is_seeded_per_scene_and_keeps_inputs_out_of_the_heldout_views():
    inputs, held = D.split_scene_views(10, 3, seed=D.scene_seed(0, "a"), max_heldout=4)
    assert len(inputs) == 3 and len(held) == 4 and not set(inputs) & set(held)
    assert D.split_scene_views(10, 3, seed=D.scene_seed(0, "a"))[0] == inputs  # reproducible
    others = {tuple(D.split_scene_views(10, 3, seed=D.scene_seed(0, n))[0]) for n in "bcdefg"}
    assert len(others) > 1  # scenes differ


# ------------------------------------------------------------------------------------- GeNVS end to end


@pytest.fixture(scope="module")
def genvs_experiment(tmp_path_factory):
    """A tiny GeNVS experiment (2 training iterations, 32 px) on 6 built-in SRN cars x 8 views."""
    from holo3d.data.synthetic import SyntheticSpec, generate_dataset
    from holo3d.data.synthetic.srn_writer import SrnWriter
    from holo3d.train.config_cli import compose_config
    from holo3d.train.experiment import Experiment

    base = tmp_path_factory.mktemp("genvs")
    spec = SyntheticSpec(categories=("car",), sequences=6, frames=8, image_size=(32, 32), image_format="png")
    root = generate_dataset(spec, str(base / "root"), writer_factory=SrnWriter, progress=False, fmt="srn")
    data, model = "data_source_Holo3DDataSource_args", "model_factory_HoloModelFactory_args.model_GenvsModel_args"
    cfg = compose_config("genvs_demo", [
        f"exp_dir={base / 'exp'}",
        f"{data}.dataset_map_provider_SrnDatasetMapProvider_args.dataset_root={root}",
        f"{data}.dataset_map_provider_SrnDatasetMapProvider_args.category=cars",
        f"{data}.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args.dataset_length_train=2",
        f"{data}.data_loader_map_provider_MultiSceneDataLoaderMapProvider_args.scenes_per_batch=2",
        f"{model}.image_size=32", f"{model}.latent_size=16", f"{model}.unet_args.model_channels=16",
        f"{model}.unet_args.channel_mult=[1,2]", f"{model}.renderer_args.n_pts_coarse=12",
        "training_loop_HoloTrainingLoop_args.max_epochs=1",
    ])
    Experiment(**cfg).run(cfg)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    return base / "exp"


GENVS_RUN = dict(iterations=2, max_heldout_views=3, n_frames=3, video_size=[16, 16], denoise_steps=2, sample_steps=2,
                 device="cpu", **{**TINY_FIELD, "n_pts_coarse": 8, "n_pts_fine": 0})


@pytest.mark.filterwarnings("ignore:.*scenes repeat within a batch")
def test_genvs_denoiser_and_the_driver_end_to_end(genvs_experiment, tmp_path):
    from holo3d.sample.experiment_loader import load_experiment

    model = load_experiment(str(genvs_experiment), device="cpu").model
    denoiser = D.denoiser_for(model)
    cams = D.CameraDistribution(SimpleViews(model), DistillConfig(camera_distribution="sphere")).draw(
        2, torch.Generator().manual_seed(0))
    rgb = torch.rand(2, 3, 32, 32)
    cond = denoiser.condition(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32), cams)
    clean = [denoiser.denoise_to_clean(rgb, 1.0, cams, cond, steps=2, sampler="euler",
                                       generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert clean[0].shape == rgb.shape and 0 <= float(clean[0].min()) and float(clean[0].max()) <= 1
    assert torch.equal(clean[0], clean[1])  # seeded
    # from a barely noised render, one Euler step returns about the render itself (c_skip ~ 1):
    # the chain starts at the render, not at pure noise
    near = denoiser.denoise_to_clean(rgb, 0.01, cams, cond, steps=1, sampler="euler")
    assert (near - rgb).abs().max() < 0.05

    cfg = OmegaConf.structured(DistillConfig(exp_dir=str(genvs_experiment), max_scenes=1, **GENVS_RUN))
    out = D.distill_scenes(cfg)
    (scene_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert {p.name for p in scene_dir.iterdir()} == {"field.pth", "turntable.mp4", "heldout_views.mp4",
                                                     "heldout_views.png", "metrics.json"}
    report = json.loads((scene_dir / "metrics.json").read_text())
    assert set(report["methods"]) == set(D.METHODS) and report["iterations"] == 2
    assert all(math.isfinite(report["methods"][m]["psnr"]) for m in D.METHODS)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["n_sequences"] == 1 and "distilled_psnr" in summary["mean"]
    # rerun: the finished scene is skipped, its files untouched
    stamp = (scene_dir / "field.pth").stat().st_mtime_ns
    D.distill_scenes(cfg)
    assert (scene_dir / "field.pth").stat().st_mtime_ns == stamp


@pytest.mark.filterwarnings("ignore:.*scenes repeat within a batch")
def test_gpu_script_writes_the_table_and_a_contact_sheet(genvs_experiment, tmp_path):
    from holo3d.bench.distill_run import main

    sets = [f"--set={k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in GENVS_RUN.items()
            if k != "iterations"]
    assert main(["--denoiser-exp", str(genvs_experiment), "--scenes", "1", "--iterations", "2",
                 "--seconds-per-scene", "30", "--out", str(tmp_path / "run"), *sets]) == 0
    assert {"metrics.json", "contact_sheet.png", "scenes"} <= {p.name for p in (tmp_path / "run").iterdir()}
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for name in D.METHODS:
        assert set(report["table"][name]) >= {"psnr", "ssim", "consistency_l1", "sharpness_ratio"}
    assert report["table"]["seconds_per_scene"] > 0 and report["table"]["iterations_per_scene"] == 2


class SimpleViews:
    """Just the cameras a ``CameraDistribution`` draws around: a ring at the model's free-view distance."""

    def __init__(self, model):
        from holo3d.render.trajectories import turntable_cameras

        self.all_cameras = turntable_cameras(6, 20.0, model.free_view_distance, focal_length=model.free_view_focal)
