"""A VoxelLDM export is self-contained: python -m holo3d.export writes the frozen autoencoder's
architecture into config.yaml (its weights are in the LDM's state dict), so holo3d.load needs no
stage-1 folder; paths under the working directory are recorded relative to it; the LDM built that
way refuses to train and rejects ambiguous configs."""

import json
import shutil

import pytest
import torch
from omegaconf import OmegaConf
from pytorch3d.implicitron.tools.config import get_default_args

import holo3d
from holo3d.data.synthetic import generate_dataset, spec
from holo3d.data.synthetic.voxel_writer import VoxelWriter
from holo3d.export import CONFIG_NAME, INFO_NAME, WEIGHTS_NAME, export_experiment, portable_paths
from holo3d.models.voxel_ldm import VoxelLDM
from holo3d.sample.experiment_loader import load_experiment
from holo3d.train.config_cli import compose_config
from holo3d.train.experiment import Experiment

LDM_ARGS = "model_factory_HoloModelFactory_args.model_VoxelLDM_args"
AE = {"resolution": 16, "latent_channels": 4, "latent_resolution": 4, "base_channels": 8, "output_resolution": 16}


def _train(config: str, exp_dir, root, *overrides: str) -> None:
    cfg = compose_config(config, [f"exp_dir={exp_dir}", f"data_source_VoxelDataSource_args.dataset_root={root}",
                                  "training_loop_HoloTrainingLoop_args.max_epochs=1", *overrides])
    Experiment(**cfg).run(cfg)


@pytest.fixture(scope="module")
def ldm_and_ae(tmp_path_factory):
    """A 1-epoch voxel_ldm_demo experiment on a 1-epoch voxel_ae_demo one (tiny chair / mug voxels)."""
    torch.set_num_threads(1)
    tiny = spec.SyntheticSpec(categories=("chair", "mug"), sequences=4, frames=4, image_size=(16, 16))
    root = generate_dataset(tiny, str(tmp_path_factory.mktemp("voxels") / "builtin"), writer_factory=VoxelWriter,
                            progress=False, fmt="voxels")
    ae_dir, ldm_dir = tmp_path_factory.mktemp("ae"), tmp_path_factory.mktemp("ldm")
    _train("voxel_ae_demo", ae_dir, root)
    _train("voxel_ldm_demo", ldm_dir, root, f"{LDM_ARGS}.autoencoder_exp_dir={ae_dir}")
    return ldm_dir, ae_dir


def _ldm_args(**changes):
    args = get_default_args(VoxelLDM)
    args.categories = "chair,mug"
    args.unet_args.model_channels, args.unet_args.channel_mult, args.unet_args.attention_resolutions = 8, [1, 2], [2]
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def test_export_loads_and_samples_without_the_autoencoder_folder(ldm_and_ae, tmp_path):
    ldm_dir, ae_dir = ldm_and_ae
    reference = load_experiment(str(ldm_dir), device="cpu").model
    out = export_experiment(str(ldm_dir), str(tmp_path / "export"))
    args = OmegaConf.load(out / CONFIG_NAME).model_factory_HoloModelFactory_args.model_VoxelLDM_args
    assert args.autoencoder_exp_dir == "" and dict(args.autoencoder_args) == AE

    moved = shutil.move(str(ae_dir), str(tmp_path / "ae_moved_away"))  # the stage-1 folder is gone
    try:
        model = holo3d.load(out, device="cpu")
    finally:
        shutil.move(moved, str(ae_dir))
    for name, tensor in reference.state_dict().items():  # autoencoder, BatchNorm statistics, latent stats
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
    samples = [m.sample(2, cond=m.conditions(2, "mug"), steps=3, generator=torch.Generator().manual_seed(0))
               for m in (model, reference)]
    assert samples[0].shape == (2, 1, 16, 16, 16)
    torch.testing.assert_close(samples[0], samples[1], rtol=0, atol=0)


def test_export_records_paths_under_the_working_directory_relative_to_it(ldm_and_ae, tmp_path, monkeypatch):
    from safetensors import safe_open

    ldm_dir, _ = ldm_and_ae
    monkeypatch.chdir(ldm_dir.parent)
    out = export_experiment(str(ldm_dir), str(tmp_path / "export"))
    info = json.loads((out / INFO_NAME).read_text())
    assert info["exp_dir"] == ldm_dir.name and info["checkpoint"].startswith(f"{ldm_dir.name}/checkpoints/")
    with safe_open(str(out / WEIGHTS_NAME), "pt") as weights:
        assert weights.metadata()["exp_dir"] == ldm_dir.name
    config = OmegaConf.load(out / CONFIG_NAME)
    assert config.exp_dir == ldm_dir.name and str(ldm_dir.parent) not in (out / CONFIG_NAME).read_text()
    monkeypatch.chdir(tmp_path)  # loading reads none of the recorded paths
    assert holo3d.load(out, device="cpu").category_names == ["chair", "mug"]


def test_portable_paths_keeps_values_that_are_not_paths_under_the_base(tmp_path):
    value = {"a": str(tmp_path / "x" / "y"), "b": ["/elsewhere/z", 3, "rel/w"], "c": {"d": str(tmp_path)}}
    assert portable_paths(value, tmp_path) == {"a": "x/y", "b": ["/elsewhere/z", 3, "rel/w"], "c": {"d": "."}}


def test_an_ldm_built_from_autoencoder_args_refuses_to_train():
    model = VoxelLDM(**_ldm_args(autoencoder_args=AE)).train()
    voxels, label = torch.zeros(2, 1, 16, 16, 16), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="training needs autoencoder_exp_dir"):
        model(voxels=voxels, label=label)
    model.eval()(voxels=voxels, label=label)  # evaluation (validation loss) is fine


@pytest.mark.parametrize("changes, message", [
    ({"autoencoder_args": AE, "autoencoder_exp_dir": "exp/ae"}, "not both"),
    ({"autoencoder_args": {k: v for k, v in AE.items() if k != "base_channels"}}, "lacks .'base_channels'."),
])
def test_ambiguous_or_incomplete_autoencoder_args_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        VoxelLDM(**_ldm_args(**changes))
