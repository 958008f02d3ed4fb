"""The 3D voxel latent diffusion system (holo3d/models/voxel_ldm.py), trained in two stages through
the unchanged Experiment on the demo configs over tiny built-in voxels (chair, mug at 16^3):
stage 1's reconstruction IoU, stage 2 loading it frozen (and refusing a missing / mismatching one),
classifier-free guidance's two ends, conditions, samplers, rendering and generate_samples.
"""

import shutil

import numpy as np
import pytest
import torch
import yaml

from holo3d.data.synthetic import generate_dataset, spec
from holo3d.data.synthetic.voxel_writer import VoxelWriter
from holo3d.io.experiment_files import ExperimentFilesError
from holo3d.models.voxel_autoencoder import iou
from holo3d.models.voxel_ldm import VoxelLDM
from holo3d.render.trajectories import turntable_cameras
from holo3d.sample.experiment_loader import load_experiment
from holo3d.sample.generate import generate_samples
from holo3d.sample.script_config import SampleConfig
from holo3d.train.config_cli import compose_config
from holo3d.train.experiment import Experiment

# 2 train, 1 val, 1 test object per category
SPEC = spec.SyntheticSpec(categories=("chair", "mug"), sequences=4, frames=4, image_size=(16, 16))
LDM_ARGS = "model_factory_HoloModelFactory_args.model_VoxelLDM_args"
AE_ARGS = "model_factory_HoloModelFactory_args.model_VoxelAutoencoderModel_args"


@pytest.fixture(scope="module")
def voxel_root(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("voxels") / "builtin"
    return generate_dataset(SPEC, str(out), writer_factory=VoxelWriter, progress=False, fmt="voxels")


def _train(config: str, exp_dir, root, epochs: int, *overrides: str) -> Experiment:
    cfg = compose_config(config, [f"exp_dir={exp_dir}", f"data_source_VoxelDataSource_args.dataset_root={root}",
                                  f"training_loop_HoloTrainingLoop_args.max_epochs={epochs}", *overrides])
    experiment = Experiment(**cfg)
    experiment.run(cfg)
    return experiment


@pytest.fixture(scope="module")
def ae_exp(voxel_root, tmp_path_factory):
    torch.set_num_threads(1)
    exp_dir = tmp_path_factory.mktemp("ae")
    return exp_dir, _train("voxel_ae_demo", exp_dir, voxel_root, 120)


@pytest.fixture(scope="module")
def ldm_exp(ae_exp, voxel_root, tmp_path_factory):
    torch.set_num_threads(1)
    exp_dir = tmp_path_factory.mktemp("ldm")
    experiment = _train("voxel_ldm_demo", exp_dir, voxel_root, 25, f"{LDM_ARGS}.autoencoder_exp_dir={ae_exp[0]}")
    return exp_dir, experiment


def _split(experiment: Experiment, split: str):
    batches = list(getattr(experiment.data_source.get_datasets_and_dataloaders()[1], split))
    return torch.cat([b["voxels"] for b in batches]), torch.cat([b["label"] for b in batches])


def test_autoencoder_iou_rises_well_above_the_empty_and_full_baselines(ae_exp):
    exp_dir, experiment = ae_exp
    model = load_experiment(str(exp_dir), device="cpu").model
    for split, floor in (("train", 0.9), ("val", 0.45)):
        voxels, _ = _split(experiment, split)  # (N, 1, 16, 16, 16)
        with torch.no_grad():
            recon = torch.sigmoid(model.autoencoder(voxels))
        empty = iou(torch.zeros_like(voxels), voxels).mean()  # 0: every shape has occupied voxels
        full = iou(torch.ones_like(voxels), voxels).mean()  # the occupied fraction, ~0.07
        got = iou(recon, voxels).mean()
        assert empty == 0 and full < 0.2 and got > floor, (split, float(got), float(full))


def test_ldm_loads_the_autoencoder_frozen_and_normalises_its_latents(ae_exp, ldm_exp):
    model: VoxelLDM = ldm_exp[1].model_factory.model
    ae_weights = torch.load(sorted((ae_exp[0] / "checkpoints").iterdir())[-1], weights_only=False)["model"]
    for name, tensor in model.autoencoder.state_dict().items():
        torch.testing.assert_close(tensor, ae_weights[f"autoencoder.{name}"])  # unchanged by stage 2
    assert not any(p.requires_grad for p in model.autoencoder.parameters())
    assert model.train().autoencoder.training is False  # BatchNorm keeps stage 1's statistics
    state = model.state_dict()
    assert any(k.startswith("autoencoder.") for k in state) and bool(state["latent_stats_ready"])
    voxels, _ = _split(ldm_exp[1], "train")
    z = model.encode(voxels)  # (N, 4, 4, 4, 4)
    assert z.shape == (voxels.shape[0], 4, 4, 4, 4)
    assert z.mean().abs() < 0.3 and 0.7 < z.std() < 1.3


def test_a_missing_or_mismatching_autoencoder_exp_dir_is_named(ae_exp, ldm_exp, voxel_root, tmp_path):
    overrides = [f"data_source_VoxelDataSource_args.dataset_root={voxel_root}"]

    def build(ae_dir):
        cfg = compose_config("voxel_ldm_demo", [f"exp_dir={tmp_path / 'ldm'}", *overrides,
                                                f"{LDM_ARGS}.autoencoder_exp_dir={ae_dir}"])
        return Experiment(**cfg)

    with pytest.raises(ExperimentFilesError, match="autoencoder_exp_dir.*no such folder"):
        build(tmp_path / "nowhere")
    copy = tmp_path / "ae_copy"
    shutil.copytree(ae_exp[0], copy)
    config = yaml.safe_load((copy / "expconfig.yaml").read_text())
    config["model_factory_HoloModelFactory_args"]["model_VoxelAutoencoderModel_args"]["latent_channels"] = 8
    (copy / "expconfig.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="does not fit the autoencoder.*checkpoint .*4.* vs config .*8"):
        build(copy)
    with pytest.raises(ValueError, match="is a VoxelLDM experiment"):
        build(ldm_exp[0])
    shutil.rmtree(copy / "checkpoints")
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        build(copy)
    model = ldm_exp[1].model_factory.model
    with pytest.raises(ValueError, match=r"voxels shape \(1, 1, 8, 8, 8\).*resolution 16"):
        model(voxels=torch.zeros(1, 1, 8, 8, 8), label=torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels \[2\] outside \[0, 2\)"):
        model(voxels=torch.zeros(1, 1, 16, 16, 16), label=torch.tensor([2]))


def test_guidance_scale_0_is_the_unconditional_and_1_the_conditional_prediction(ldm_exp):
    model: VoxelLDM = ldm_exp[1].model_factory.model.eval()
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 4, 4, 4, 4, generator=g), torch.tensor([5, 40, 90])
    label = model.conditions(3, "mug")["label"]
    x0_fn = model.diffusion.denoiser(model.denoiser_net)
    with torch.no_grad():
        cond, uncond = x0_fn(x, t, label=label), x0_fn(x, t, label=torch.full_like(label, model.null_label))
        assert not torch.allclose(cond, uncond)  # the trained label embedding matters
        assert torch.equal(model.guided_x0_fn(0.0)(x, t, label=label), uncond)
        assert torch.equal(model.guided_x0_fn(1.0)(x, t, label=label), cond)
        guided = model.guided_x0_fn(2.0)(x, t, label=label)  # one batched (2B) pass
    torch.testing.assert_close(guided, uncond + 2.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_conditions_map_category_names_and_refuse_unknown_ones(ldm_exp):
    model = ldm_exp[1].model_factory.model
    assert model.conditions(4, "") is None
    assert torch.equal(model.conditions(2, "mug")["label"], torch.tensor([1, 1]))
    with pytest.raises(ValueError, match=r"'airplane'.*\['chair', 'mug'\]"):
        model.conditions(1, "airplane")


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "ddpm"])
def test_samples_are_occupancy_probabilities_and_reproducible(ldm_exp, sampler):
    model = ldm_exp[1].model_factory.model.eval()
    seen = []
    kwargs = dict(cond=model.conditions(2, "chair"), sampler=sampler, steps=6, guidance_scale=2.0,
                  callback=lambda i, z, occupancy: seen.append((z.shape, occupancy.shape)))
    a = model.sample(2, generator=torch.Generator().manual_seed(1), **kwargs)
    b = model.sample(2, generator=torch.Generator().manual_seed(1), **kwargs)
    assert a.shape == (2, 1, 16, 16, 16) and torch.equal(a, b)
    assert torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
    assert len(seen) == 2 * 6 and seen[0] == ((2, 4, 4, 4, 4), (2, 1, 16, 16, 16))  # callbacks see shapes
    unconditional = model.sample(1, sampler=sampler, steps=6, generator=torch.Generator().manual_seed(1))
    assert unconditional.shape == (1, 1, 16, 16, 16)


def test_a_centred_cube_renders_opaque_in_the_middle_and_background_at_the_corners(ldm_exp):
    model = ldm_exp[1].model_factory.model
    occupancy = torch.zeros(1, 1, 16, 16, 16)
    occupancy[..., 4:12, 4:12, 4:12] = 1.0  # the cube [-0.5, 0.5]^3 of the 2.0 world cube
    cameras = turntable_cameras(3, elevation_deg=30.0, distance=3.0)
    out = model.render_samples(occupancy, cameras, (24, 24))
    rgb, opacity, depth = out["rgb"][0], out["opacity"][0], out["depth"][0]  # (3, C, 24, 24)
    assert rgb.shape == (3, 3, 24, 24) and opacity.shape == depth.shape == (3, 1, 24, 24)
    centre = opacity[:, 0, 10:14, 10:14]
    assert (centre > 0.95).all() and (rgb[:, :, 10:14, 10:14] < 0.95).all()  # shaded grey, not white
    assert (depth[:, 0, 10:14, 10:14] - (3.0 - 0.5)).abs().max() < 0.35  # the near face, ~2.5 away
    for corner in (opacity[:, 0, :2, :2], opacity[:, 0, -2:, -2:]):
        assert (corner < 0.01).all()
    torch.testing.assert_close(rgb[:, :, :2, :2], torch.ones(3, 3, 2, 2))  # white background


def test_generate_samples_writes_class_guided_videos_and_voxels(ldm_exp, tmp_path):
    cfg = SampleConfig(exp_dir=str(ldm_exp[0]), num_samples=2, batch_size=2, sampler="ddim", steps=5,
                       label="chair", guidance=2.0, render_size=[16, 16], video_size=[16, 16], device="cpu",
                       n_frames=4, distance=3.0, up=[0.0, 1.0, 0.0], progressive_sampling_steps_per_render=2,
                       output_dir=str(tmp_path / "out"))
    out = generate_samples(cfg)
    names = sorted(p.name for p in out.iterdir())
    for i in range(2):
        assert f"sample_{i:03d}.mp4" in names and f"sample_{i:03d}_progressive.mp4" in names
    assert "contact_sheet.png" in names and "manifest.json" in names
    voxels = np.load(out / "samples.npy")
    assert voxels.shape == (2, 16, 16, 16) and voxels.dtype == np.bool_


def test_the_128_variant_decodes_at_twice_the_input_side_from_data_at_either_side():
    from pytorch3d.implicitron.tools.config import get_default_args

    from holo3d.models.voxel_ldm import VoxelAutoencoderModel

    args = get_default_args(VoxelAutoencoderModel)
    args.update(resolution=8, latent_channels=2, latent_resolution=2, base_channels=4, output_resolution=16)
    model = VoxelAutoencoderModel(**args)
    fine = torch.zeros(2, 1, 16, 16, 16)
    fine[:, :, 3:9, 3:9, 3:9] = 1.0
    for voxels in (fine, fine[:, :, ::2, ::2, ::2]):  # served at 16 (the target) or at 8 (the input)
        out = model(voxels=voxels, label=torch.zeros(2, dtype=torch.long), name=["a", "b"])
        assert out["objective"].ndim == 0 and torch.isfinite(out["objective"])
    assert model.autoencoder(fine[:, :, ::2, ::2, ::2]).shape == (2, 1, 16, 16, 16)
    with pytest.raises(ValueError, match=r"resolution 8 or output_resolution 16"):
        model(voxels=torch.zeros(1, 1, 32, 32, 32))


@pytest.mark.slow
def test_class_guided_samples_reproduce_training_shapes_of_their_class(ae_exp, voxel_root, tmp_path):
    """600 steps on 4 training shapes (30 s on one idle core, minutes under load): samples of a class
    are close copies of that class's training shapes (measured: nearest-shape IoU 0.84-0.96; the
    nearest shape is of the asked class for 15 / 16 samples at w = 1, 16 / 16 at w = 3)."""
    experiment = _train("voxel_ldm_demo", tmp_path / "ldm", voxel_root, 600,
                        f"{LDM_ARGS}.autoencoder_exp_dir={ae_exp[0]}",
                        "training_loop_HoloTrainingLoop_args.validation_interval_epochs=1000",
                        "training_loop_HoloTrainingLoop_args.checkpoint_interval_epochs=1000")
    model = experiment.model_factory.model.eval()
    voxels, labels = _split(experiment, "train")
    for index, category in enumerate(model.category_names):
        samples = model.sample(8, cond=model.conditions(8, category), sampler="ddim", steps=50, guidance_scale=3.0,
                               generator=torch.Generator().manual_seed(0))
        overlap = torch.stack([iou(samples, v.expand_as(samples)) for v in voxels[:, None]], 1)  # (8, N)
        best = overlap.max(1)
        assert best.values.mean() > 0.6 and (labels[best.indices] == index).float().mean() >= 0.75, category
