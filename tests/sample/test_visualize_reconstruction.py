"""visualize_reconstruction.py end to end: metrics.json, side-by-side videos, LPIPS skipped cleanly."""

import json
import math

import imageio.v3 as iio
import pytest
from omegaconf import OmegaConf

from sample_testdata import error_lines, run_script
from holo3d.sample.reconstruct import visualize_reconstruction
from holo3d.sample.input_checks import SettingsError
from holo3d.sample.script_config import ReconstructionConfig
from holo3d.sample.sequence_reconstruction import split_views

METRICS = {"psnr", "ssim", "ms_ssim", "psnr_fg", "psnr_full"}


def test_split_views_spreads_sources_and_keeps_the_rest_held_out():
    assert split_views(8, 2) == ([0, 7], [1, 2, 3, 4, 5, 6])
    assert split_views(8, 3, max_targets=2) == ([0, 4, 7], [1, 6])
    with pytest.raises(SettingsError, match="n_source_views"):
        split_views(4, 4)


def test_script_writes_metrics_and_videos(trained_experiment, tmp_path):
    result = run_script(
        "visualize_reconstruction.py", f"exp_dir={trained_experiment}", "n_source_views=2",
        "max_target_views=4", "n_frames=5", "video_size=[32,48]", TORCH_HOME=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = trained_experiment / "reconstructions"
    report = json.loads((out / "metrics.json").read_text())
    assert set(report) >= {"mean", "per_sequence", "skipped", "checkpoint", "weights"}
    assert METRICS <= set(report["mean"]) and report["weights"] == "ema"
    (name, per_sequence), = report["per_sequence"].items()  # the test split has one sequence
    assert METRICS <= set(per_sequence) and per_sequence["n_views"] == 4
    assert all(math.isfinite(per_sequence[k]) for k in METRICS)
    assert "LPIPS skipped" in report["skipped"]["lpips"] and str(tmp_path) in report["skipped"]["lpips"]
    assert "LPIPS skipped" in result.stdout + result.stderr  # said once, in one line, while running
    # GT | render | depth for each held-out view; render | depth along the turntable (2 px gaps)
    assert iio.imread(out / f"{name}_views.mp4").shape == (4, 32, 3 * 32 + 2 * 2, 3)
    assert iio.imread(out / f"{name}_turntable.mp4").shape == (5, 32, 2 * 48 + 2, 3)
    assert not error_lines(result)


def test_denoising_reconstruction_and_unknown_sequence(trained_experiment, tmp_path):
    base = dict(exp_dir=str(trained_experiment), output_dir=str(tmp_path / "rec"), n_source_views=2,
                max_target_views=2, n_frames=2, video_size=[16, 16])
    cfg = OmegaConf.structured(ReconstructionConfig(**base, denoise_from_t=20, denoise_steps=2))
    report = json.loads((visualize_reconstruction(cfg) / "metrics.json").read_text())
    assert report["denoise_from_t"] == 20 and math.isfinite(report["mean"]["psnr"])
    bad = OmegaConf.structured(ReconstructionConfig(**{**base, "output_dir": str(tmp_path / "bad")},
                                                    sequences=["no_such_sequence"]))
    with pytest.raises(SettingsError, match="no_such_sequence"):
        visualize_reconstruction(bad)
    assert not (tmp_path / "bad").exists()
