"""Video files: decodable with the right frame count and size, even sizes for h264, nothing left on failure."""

import imageio.v3 as iio
import pytest
import torch

from holo3d.sample.contact_sheet import compose_sheet, sheet_view_indices, write_png
from holo3d.sample.video_writer import VideoWriter, write_video


def _frames(t=5, h=24, w=40):
    ramp = torch.linspace(0, 1, t)[:, None, None, None]
    return (ramp * torch.ones(t, 3, h, w)).clone()


def test_mp4_and_gif_decode_with_the_written_frames(tmp_path):
    written = write_video(tmp_path / "clip.mp4", _frames(), fps=10, gif=True)
    assert written == [tmp_path / "clip.mp4", tmp_path / "clip.gif"]
    video = iio.imread(tmp_path / "clip.mp4")
    assert video.shape == (5, 24, 40, 3)
    # brightness ramps up frame by frame (h264 is lossy: compare loosely)
    means = video.reshape(5, -1).mean(axis=1)
    assert means[0] < 20 and means[-1] > 235 and (means[1:] > means[:-1]).all()
    assert iio.imread(tmp_path / "clip.gif").shape[:3] == (5, 24, 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "clip.mp4"]


def test_odd_sizes_are_padded_to_even(tmp_path):
    write_video(tmp_path / "odd.mp4", _frames(t=3, h=15, w=21))
    assert iio.imread(tmp_path / "odd.mp4").shape == (3, 16, 22, 3)


def test_streamed_frames_and_failure_leave_nothing(tmp_path):
    with VideoWriter(tmp_path / "streamed.mp4", fps=5) as video:
        for frame in _frames(t=4):
            video.append(frame)
    assert video.n_frames == 4 and iio.imread(tmp_path / "streamed.mp4").shape[0] == 4
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(tmp_path / "broken.mp4", fps=5) as video:
            video.append(_frames(t=2))
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.mp4"]  # no partial file


def test_contact_sheet(tmp_path):
    assert sheet_view_indices(75, 4) == [0, 19, 38, 56]
    rows = [torch.zeros(4, 3, 8, 10), torch.ones(4, 3, 8, 10) * 0.5]
    sheet = compose_sheet(rows)
    assert sheet.shape == (3, 2 * 8 + 3 * 4, 4 * 10 + 5 * 4)
    image = iio.imread(write_png(tmp_path / "sheet.png", sheet))
    assert image.shape == (28, 60, 3) and image[4, 4].tolist() == [0, 0, 0]


def test_background_writer_and_missing_encoder(tmp_path, monkeypatch):
    from holo3d.sample import video_writer
    from holo3d.sample.input_checks import MissingDependencyError

    with video_writer.BackgroundVideoWriter(max_workers=2, max_pending=1) as videos:
        for i in range(3):
            videos.submit(tmp_path / f"v{i}.mp4", _frames(t=2 + i))
    assert [iio.imread(tmp_path / f"v{i}.mp4").shape[0] for i in range(3)] == [2, 3, 4]
    assert sorted(p.name for p in videos.written) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    monkeypatch.setattr(video_writer.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="install imageio-ffmpeg"):
        video_writer.video_backend()
