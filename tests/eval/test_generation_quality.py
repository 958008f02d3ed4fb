"""Generation-quality figures: voxel-centre convention, the ceiling / floor rows, appearance spread."""

import json
import math

import numpy as np
import pytest
import torch

from holo3d.eval.generation_quality import (
    appearance_spread,
    evaluate_generation,
    format_rows,
    samples_to_occupancy,
    voxel_centres,
)


class _HalfSpaceField:
    """A FieldModel stand-in: sample s is opaque where x > s (world units), empty elsewhere."""

    scene_extent = 2.0

    def query_field(self, sample, points, directions):
        density = 1e3 * (points[:, 0] > sample).float()
        return density, torch.zeros(points.shape[0], 3)


def _boxes(n, res=16, seed=0):
    """n random axis-aligned boxes (n, R, R, R), each at least 3 voxels a side."""
    rng = np.random.default_rng(seed)
    occ = np.zeros((n, res, res, res), dtype=bool)
    for i in range(n):
        lo = rng.integers(0, res - 6, 3)
        hi = lo + rng.integers(3, 6, 3)
        occ[i, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return torch.from_numpy(occ)


def test_voxel_centres_follow_ground_truth_convention():
    """Centre of voxel (k, j, i) is ((i + .5) e / R - e / 2, ...), (z, y, x) raster order, as
    SyntheticObject.occupancy writes occupancy_64.npy."""
    pts = voxel_centres(4, 2.0).view(4, 4, 4, 3)
    assert torch.allclose(pts[0, 0, 0], torch.tensor([-0.75, -0.75, -0.75]))
    assert torch.allclose(pts[1, 2, 3], torch.tensor([0.75, 0.25, -0.25]))  # x from i, y from j, z from k


def test_samples_to_occupancy_reads_density_along_x_on_last_axis():
    occ = samples_to_occupancy(_HalfSpaceField(), torch.tensor([0.0, 0.5]), resolution=8)
    assert occ.shape == (2, 8, 8, 8) and occ.dtype == torch.bool
    # x > 0 -> voxels i = 4..7 of the last (x) axis, the same for every (z, y)
    assert occ[0, :, :, 4:].all() and not occ[0, :, :, :4].any()
    assert occ[1, :, :, 6:].all() and not occ[1, :, :, :6].any()  # centres 0.625, 0.875 > 0.5


def test_ceiling_beats_floor_and_collapse_is_detected():
    heldout, train = _boxes(8, seed=1), _boxes(8, seed=2)
    diverse = evaluate_generation(_boxes(8, seed=3), heldout, train, points=256)
    collapsed = evaluate_generation(train[3:4].expand(8, -1, -1, -1), heldout, train, points=256)
    for report in (diverse, collapsed):
        floor, ceiling = report.shapes["floor"], report.shapes["ceiling"]
        assert floor["cov_cd"] == pytest.approx(1 / 8)  # one shape covers one reference
        assert ceiling["cov_cd"] > floor["cov_cd"]
        assert floor["nna_cd"] > ceiling["nna_cd"]
    assert diverse.shapes["samples"]["cov_cd"] > 2 * collapsed.shapes["samples"]["cov_cd"]
    assert collapsed.shapes["samples"]["cov_cd"] == pytest.approx(1 / 8)
    assert diverse.targets()["cov_at_least_half_ceiling"] is True
    assert collapsed.targets()["cov_at_least_half_ceiling"] is False
    assert diverse.targets()["appearance_at_least_half_gt"] is None  # no images given
    assert "samples" in diverse.table() and "diverse" in format_rows([diverse], ["diverse"])


def test_empty_samples_give_nan_row_not_an_error(tmp_path):
    heldout, train = _boxes(4, seed=1), _boxes(4, seed=2)
    empty = torch.zeros(4, 16, 16, 16, dtype=torch.bool)
    empty[0] = heldout[0]
    report = evaluate_generation(empty, heldout, train, points=128)
    assert report.shapes["samples"]["n_empty"] == 3 and math.isnan(report.shapes["samples"]["cov_cd"])
    data = json.loads(report.to_json(tmp_path / "gq.json").read_text())  # strict JSON: NaN -> null
    assert data["shapes"]["samples"]["cov_cd"] is None
    assert data["targets"]["cov_at_least_half_ceiling"] is None


def test_appearance_spread():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 2, 3, 8, 8, generator=g)
    assert appearance_spread(images[:1].expand(5, -1, -1, -1, -1)) == pytest.approx(0.0, abs=1e-6)
    two = torch.stack([torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)])
    assert appearance_spread(two) == pytest.approx(1.0)
    report = evaluate_generation(_boxes(4, seed=3), _boxes(4, seed=1), _boxes(4, seed=2), points=128,
                                 sample_images=images * 0.5, reference_images=images)
    assert report.appearance["ratio"] == pytest.approx(0.5, rel=1e-5)
    assert report.targets()["appearance_at_least_half_gt"] is True
    with pytest.raises(ValueError, match="N >= 2"):
        appearance_spread(images[:1])


# ----------------------------------------------------------------- the driver on a trained experiment


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    """A 6-sequence chair dataset (4 train, 1 dev, 1 test) and a tiny HoloDiffusion trained 2 steps."""
    import dataclasses
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sample"))
    from accelerate.state import AcceleratorState
    from sample_testdata import tiny_config

    from holo3d.data.synthetic.generate import generate_dataset
    from holo3d.data.synthetic.spec import get_preset
    from holo3d.train.experiment import Experiment

    root = tmp_path_factory.mktemp("data")
    spec = dataclasses.replace(get_preset("tiny"), categories=("chair",), sequences=6, frames=6,
                               image_size=(32, 32), occupancy_resolution=16)
    data = Path(generate_dataset(spec, str(root / "tiny"), progress=False))
    exp_dir = tmp_path_factory.mktemp("exp") / "tiny"
    cfg = tiny_config(exp_dir, data)
    Experiment(**cfg).run(cfg)
    AcceleratorState._reset_state()
    return exp_dir


def test_driver_writes_report_and_sheet(tiny_experiment, tmp_path, capsys):
    from holo3d.sample.generation_eval import main

    out = tmp_path / "gq"
    code = main([f"exp_dir={tiny_experiment}", "num_samples=3", "steps=3", "points=64", "n_views=2",
                 "image_size=16", "device=cpu", f"out_dir={out}"])
    assert code == 0
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["shapes"]) == {"samples", "ceiling", "floor"}
    assert data["settings"]["n_heldout"] == 2 and data["settings"]["n_train"] == 4
    assert data["settings"]["resolution"] == 16
    assert data["shapes"]["floor"]["cov_cd"] == pytest.approx(0.5)  # one shape covers one of 2 references
    assert data["appearance"]["ground_truth"] > 0
    assert (out / "contact_sheet.png").stat().st_size > 0
    assert "ceiling" in capsys.readouterr().out


def test_driver_refuses_bad_keys(tiny_experiment, capsys):
    from holo3d.sample.generation_eval import main

    assert main([f"exp_dir={tiny_experiment}", "num_sample=3"]) == 2
    assert "num_sample" in capsys.readouterr().err
    assert main([f"exp_dir={tiny_experiment}", "num_samples=1"]) == 2
