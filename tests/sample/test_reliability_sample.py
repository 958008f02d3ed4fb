"""Reliability of the sampling scripts (issue 21, items 3, 4 and 6): no truncated video under a
final name on a full disk, unwritable destinations and impossible settings refused before any
sampling."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from holo3d.sample import video_writer
from holo3d.sample.generate import check_frame_memory, check_settings
from holo3d.sample.input_checks import SettingsError, ensure_writable_dir
from holo3d.sample.reconstruct import _check_model_settings, _check_settings
from holo3d.sample.script_config import ReconstructionConfig, SampleConfig
from holo3d.sample.video_writer import VideoWriteError, check_mp4_complete, write_video

REPO = Path(__file__).resolve().parents[2]


def _frames(t=6, size=32):
    return torch.rand(t, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_full_disk_leaves_no_video(tmp_path):
    """A real ffmpeg on a 'disk' of 3 KB (RLIMIT_FSIZE, inherited by ffmpeg): the encoder fails,
    the writer raises, and neither the final file nor the partial one is left."""
    script = (
        "import resource, sys, torch\n"
        "from holo3d.sample.video_writer import write_video\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (3000, resource.RLIM_INFINITY))\n"
        f"write_video(__import__('pathlib').Path(sys.argv[1]), torch.rand(40, 3, 64, 64))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "sample_001.mp4")], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "VideoWriteError" in result.stderr, result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_encoder_exit_status_and_truncated_files_are_checked(tmp_path, monkeypatch):
    good = write_video(tmp_path / "good.mp4", _frames())[0]
    check_mp4_complete(good)
    original_close = video_writer._FfmpegStream.close

    def close_then_lose_the_index(self):  # ffmpeg "succeeds" but the moov atom never lands
        original_close(self)
        data = self.path.read_bytes()
        self.path.write_bytes(data[: data.rfind(b"moov") - 4])

    monkeypatch.setattr(video_writer._FfmpegStream, "close", close_then_lose_the_index)
    with pytest.raises(VideoWriteError, match="incomplete mp4.*'moov' missing"):
        write_video(tmp_path / "views.mp4", _frames())

    def close_with_failure(self):  # the encoder reports an error at the end (e.g. ENOSPC)
        original_close(self)
        raise VideoWriteError(f"{self.path}: ffmpeg exited with status 1: No space left on device")

    monkeypatch.setattr(video_writer._FfmpegStream, "close", close_with_failure)
    with pytest.raises(VideoWriteError, match="status 1"):
        write_video(tmp_path / "turntable.mp4", _frames())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.mp4"]


def test_empty_file_is_not_a_video(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoWriteError, match="0 bytes"):
        check_mp4_complete(tmp_path / "empty.mp4")


@pytest.mark.parametrize("key, value", [
    ("steps", -5), ("eta", -3.0), ("chunk_size", -5), ("s_churn", -1.0), ("max_videos", -2),
    ("contact_sheet_views", 0), ("progressive_sampling_steps_per_render", -1),
])
def test_generate_refuses_negative_settings(key, value):
    with pytest.raises(SettingsError, match=f"{key}={value}"):
        check_settings(SampleConfig(exp_dir="x", **{key: value}))


@pytest.mark.parametrize("key, value", [
    ("max_target_views", -2), ("denoise_from_t", -1), ("chunk_size", -5), ("denoise_steps", 0),
    ("max_sequences", 0),
])
def test_reconstruct_refuses_impossible_settings(key, value):
    with pytest.raises(SettingsError, match=f"{key}={value}"):
        _check_settings(ReconstructionConfig(exp_dir="x", **{key: value}))


def test_denoise_from_t_beyond_the_schedule_is_refused():
    sys.path.insert(0, str(REPO / "tests" / "models"))
    from models_testdata import tiny_model

    model = tiny_model()
    steps = model.diffusion.num_steps
    with pytest.raises(SettingsError, match=f"denoise_from_t=5000: this model denoises from timesteps 0 .. {steps - 1}"):
        _check_model_settings(ReconstructionConfig(exp_dir="x", denoise_from_t=5000), model)
    _check_model_settings(ReconstructionConfig(exp_dir="x", denoise_from_t=steps - 1), model)


def test_huge_render_size_is_refused_before_sampling():
    with pytest.raises(SettingsError, match=r"render_size=\[65536, 65536\].*GiB of (device|host) memory"):
        check_frame_memory(SampleConfig(exp_dir="x", render_size=[65536, 65536]), torch.device("cpu"))
    check_frame_memory(SampleConfig(exp_dir="x"), torch.device("cpu"))  # the defaults fit


def test_unwritable_output_dir_is_named(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(SettingsError, match="output_dir: .*file/out is not writable"):
        ensure_writable_dir(blocker / "out", "output_dir")
    real_open = open

    def immutable(path, mode="r", *args, **kwargs):  # chattr +i: injected, root ignores modes
        if Path(path).parent.name == "frozen" and "w" in mode:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", immutable)
    with pytest.raises(SettingsError, match="output_dir: .*frozen is not writable.*Operation not permitted"):
        ensure_writable_dir(tmp_path / "frozen", "output_dir")
    assert list((tmp_path / "frozen").iterdir()) == []


@pytest.mark.slow  # a script process on a trained experiment
def test_generate_samples_checks_output_dir_before_sampling(trained_experiment, tmp_path):
    """End to end: an output_dir that cannot be written is reported (exit 2) with nothing sampled."""
    from sample_testdata import error_lines, run_script

    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    before = sorted((trained_experiment / "generated_samples").rglob("*"))  # other tests sample there too
    result = run_script("generate_samples.py", f"exp_dir={trained_experiment}", f"output_dir={blocker}/out",
                        "num_samples=1", "n_frames=2", "render_size=[16,16]", "video_size=[16,16]")
    assert result.returncode == 2, result.stderr[-2000:]
    assert any("output_dir" in line and "not writable" in line for line in error_lines(result))
    assert sorted((trained_experiment / "generated_samples").rglob("*")) == before  # nothing sampled
