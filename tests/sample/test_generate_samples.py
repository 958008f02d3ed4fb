"""generate_samples.py end to end on a tiny trained experiment: videos, grids, meshes, contact sheet."""

import json
import math

import imageio.v3 as iio
import torch
from omegaconf import OmegaConf
from pytorch3d.io import IO

from sample_testdata import run_script
from holo3d.sample.generate import generate_samples
from holo3d.sample.script_config import SampleConfig


def test_script_writes_decodable_videos_grids_meshes_and_sheet(trained_experiment):
    result = run_script(
        "generate_samples.py", f"exp_dir={trained_experiment}", "num_samples=2", "batch_size=2",
        "sampler=ddim", "steps=5", "render_size=[32,32]", "video_size=[48,64]", "n_frames=6",
        "save_voxel_features=True", "export_mesh=True", "mesh_resolution=16",
        "progressive_sampling_steps_per_render=2", "contact_sheet_views=3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = trained_experiment / "generated_samples"
    for i in range(2):
        assert iio.imread(out / f"sample_{i:03d}.mp4").shape == (6, 48, 64, 3)
        # 5 DDIM steps, a frame every 2 steps: frames follow the whole chain, ending on the sample
        assert iio.imread(out / f"sample_{i:03d}_progressive.mp4").shape == (math.ceil(5 / 2), 48, 64, 3)
        grid = torch.load(out / f"sample_{i:03d}.pt")
        assert grid.shape == (8, 8, 8, 8) and grid.abs().max() <= 1
        mesh = IO().load_mesh(out / f"sample_{i:03d}.ply")
        assert mesh.verts_packed().shape[0] > 0 and mesh.faces_packed().shape[0] > 0
        colours = mesh.textures.verts_features_packed()
        assert colours.shape == mesh.verts_packed().shape and 0 <= colours.min() <= colours.max() <= 1
    assert iio.imread(out / "contact_sheet.png").shape == (2 * 32 + 3 * 4, 3 * 32 + 4 * 4, 3)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"] == "ema" and manifest["settings"]["sampler"] == "ddim"
    assert "estimated from" in manifest["camera_path"]  # the dataset is on disk: up axis from it
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def _config(exp_dir, out_dir, **settings):
    base = dict(exp_dir=str(exp_dir), output_dir=str(out_dir), num_samples=1, render_size=[16, 16],
                video_size=[16, 16], n_frames=3, save_voxel_features=True)
    return OmegaConf.structured(SampleConfig(**{**base, **settings}))


def test_edm_sampler_with_churn_is_reproducible_and_writes_gif(trained_experiment, tmp_path):
    settings = dict(sampler="heun", steps=3, s_churn=1.0, seed=7, gif=True)
    generate_samples(_config(trained_experiment, tmp_path / "a", **settings))
    generate_samples(_config(trained_experiment, tmp_path / "b", **settings, up=[0.0, 0.0, 1.0], distance=4.0))
    grid_a, grid_b = (torch.load(tmp_path / x / "sample_000.pt") for x in "ab")
    torch.testing.assert_close(grid_a, grid_b)  # same seed, same sample (camera settings aside)
    assert iio.imread(tmp_path / "a" / "sample_000.gif").shape[:3] == (3, 16, 16)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "(given)" in manifest["camera_path"] and "distance 4.00" in manifest["camera_path"]
