"""make demo's own output: the summary picture (reconstructions, then the pre-trained model's samples),
the printed report, the samples drawn from the shipped model; the whole demo (slow)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from holo3d import demo

REPO = Path(__file__).resolve().parents[1]


def _rows(n_objects=2, k=3, side=16):
    gen = torch.Generator().manual_seed(0)
    return [(f"obj_{i}", torch.rand(k, 3, side, side, generator=gen), torch.zeros(3, side, side),
             torch.ones(3, side, side), 20.0 + i, 12.0) for i in range(n_objects)]


def test_summary_picture_has_one_row_per_object_and_sources_gt_render_columns(tmp_path):
    out = tmp_path / "demo_summary.png"
    demo.write_summary(_rows(n_objects=2, k=3), out, size=32)
    image = Image.open(out).convert("RGB")
    assert image.size == ((3 + 2) * (32 + 4) + 4, 18 + 2 * (32 + 4) + 4)
    assert not list(tmp_path.glob("*.tmp*"))  # written under a temporary name, then renamed
    # column k is the (black) ground truth, column k + 1 the (white) render, in every row
    for row in range(2):
        y = 18 + 4 + row * 36 + 16
        assert image.getpixel((4 + 3 * 36 + 16, y)) == (0, 0, 0)
        assert image.getpixel((4 + 4 * 36 + 16, y)) == (255, 255, 255)


def _samples(categories=("chair", "mug"), per_class=2, n_frames=20, side=16):
    """Fake turntables: every frame red, except frame SAMPLE_VIEWS[1] blue."""
    frames = torch.zeros(n_frames, 3, side, side)
    frames[:, 0] = 1.0
    frames[demo.SAMPLE_VIEWS[1]] = torch.tensor([0.0, 0.0, 1.0])[:, None, None]
    return [(c, frames.clone()) for c in categories for _ in range(per_class)]


def test_summary_picture_adds_the_labelled_samples_below_the_reconstructions(tmp_path):
    plain, with_samples = tmp_path / "plain.png", tmp_path / "samples.png"
    demo.write_summary(_rows(n_objects=2), plain, size=32)
    demo.write_summary(_rows(n_objects=2), with_samples, size=32, samples=_samples(), samples_note="pre-trained")
    top, image = Image.open(plain).convert("RGB"), Image.open(with_samples).convert("RGB")
    assert image.width == top.width  # 2 samples x 2 views fit under the 5 reconstruction columns
    assert image.crop((0, 0, *top.size)).tobytes() == top.tobytes()  # the reconstructions unchanged
    # one note line, then a row per category; in each, sample i's views at columns 2i (red) and 2i + 1 (blue)
    first_row = top.height + 2 * 4 + 12
    assert image.height == first_row + 2 * (32 + 4) + 4
    for row in range(2):
        y = first_row + row * 36 + 24  # below the category name
        for column, colour in enumerate([(255, 0, 0), (0, 0, 255)] * 2):
            assert image.getpixel((4 + column * 36 + 16, y)) == colour


def test_long_sample_labels_wrap_inside_the_picture(tmp_path):
    out = tmp_path / "summary.png"
    note = "samples from a small model pre-trained on the built-in data; not trained in this demo " * 3
    demo.write_summary(_rows(n_objects=1), out, size=32, samples=_samples(per_class=1), samples_note=note)
    lines = demo._text_lines(note, Image.open(out).width - 8)
    assert len(lines) > 1 and max(len(line) for line in lines) * 6 <= Image.open(out).width - 8


def test_pretrained_note_says_how_long_and_that_the_demo_did_not_train_it():
    info = json.loads((demo.PRETRAINED / "pretraining.json").read_text())
    note = demo.pretrained_note()
    assert f"pre-trained on the built-in data for {info['train_minutes']} min on " in note
    assert ("CPU" in note) == (info["device"] == "cpu")
    assert "not trained in this demo" in note


def test_sample_pretrained_writes_one_turntable_video_per_sample(tmp_path):
    torch.set_num_threads(1)
    samples = demo.sample_pretrained(tmp_path, per_class=1, n_frames=demo.SAMPLE_VIEWS[1] + 1, size=16)
    assert [c for c, _ in samples] == ["chair", "mug", "table"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chair_0.mp4", "mug_0.mp4", "table_0.mp4"]
    for _, frames in samples:
        assert frames.shape == (demo.SAMPLE_VIEWS[1] + 1, 3, 16, 16)
        assert (frames < 0.9).any()  # a shaded solid on the white background, not an empty grid
        assert not torch.equal(frames[0], frames[demo.SAMPLE_VIEWS[1]])  # the camera turns


def test_report_prints_psnr_next_to_the_baseline(tmp_path, capsys):
    (tmp_path / "reconstructions").mkdir()
    (tmp_path / "reconstructions" / "metrics.json").write_text(json.dumps({"mean": {"psnr": 21.5, "ssim": 0.8}}))
    demo.report(tmp_path, _rows(n_objects=2))
    out = capsys.readouterr().out
    assert "few-view reconstruction of held-out objects" in out and "sources | ground truth | holo3d" in out
    assert "obj_1" in out and "21.00 dB" in out and "baseline (sources' mean colour) 12.00 dB" in out
    assert "psnr 21.5" in out


@pytest.mark.slow
def test_make_demo_end_to_end(tmp_path):
    """The whole demo (minutes on 2 CPU cores): every promised output exists."""
    exp = tmp_path / "exp"
    subprocess.run([sys.executable, "-m", "holo3d.demo", "--data-dir", tmp_path / "data", "--exp-dir", exp],
                   cwd=REPO, check=True)
    assert Image.open(exp / "demo_summary.png").size[0] > 0
    metrics = json.loads((exp / "reconstructions" / "metrics.json").read_text())
    # Deterministic: 16.8 dB on the demo's held-out mugs, against ~11 dB for the sources' mean colour.
    assert metrics["n_sequences"] >= 1 and metrics["mean"]["psnr"] > 13.0
    assert list((exp / "reconstructions").glob("*_turntable.mp4"))
    assert list((exp / "reconstructions").glob("*_views.mp4"))
    videos = sorted(p.name for p in (exp / "pretrained_samples").glob("*.mp4"))
    assert videos == [f"{c}_{i}.mp4" for c in ("chair", "mug", "table") for i in range(demo.SAMPLES_PER_CLASS)]
    reconstructions_only = 18 + metrics["n_sequences"] * (96 + 4) + 4
    samples_panel = 3 * (2 * demo.SAMPLE_SIZE + 4)  # a row per category, under the label
    assert Image.open(exp / "demo_summary.png").height > reconstructions_only + samples_panel
