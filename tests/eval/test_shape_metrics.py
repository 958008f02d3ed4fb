"""3D set metrics against known answers: hand-made Chamfer, JSD bounds, MMD/COV/1-NNA sanity, bad input, CLI."""

import json
import math

import numpy as np
import pytest
import torch

from holo3d.eval.shape_metrics import (
    chamfer_pairs,
    coarse_occupancy,
    evaluate_voxel_sets,
    jsd_from_counts,
    jsd_occupancy,
    jsd_points,
    main,
    mmd_cov,
    one_nna,
    pairwise_chamfer,
    random_shapes,
    shape_set_metrics,
)

RES, POINTS = 16, 128  # tiny sets keep the CPU suite fast


def test_chamfer_of_hand_made_point_sets():
    x = torch.tensor([[[0.0, 0, 0], [1, 0, 0]], [[0, 0, 0], [0, 0, 0]]])  # (2, 2, 3)
    y = torch.tensor([[[0.0, 0, 0]], [[0, 0, 1]]])  # (2, 1, 3)
    # x0-y0: x->y mean(0, 1) = 0.5, y->x 0 -> 0.5;  x0-y1: x->y mean(1, 2) = 1.5, y->x 1 -> 2.5
    # x1-y0: 0;  x1-y1: 1 + 1 = 2
    expected = torch.tensor([[0.5, 2.5], [0.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(pairwise_chamfer(x, y, batch_size=1), expected)
    assert torch.allclose(pairwise_chamfer(x, y, batch_size=64), expected)


def test_within_set_chamfer_is_the_symmetric_full_matrix():
    x = torch.rand(7, 20, 3, generator=torch.Generator().manual_seed(0))
    full = pairwise_chamfer(x, x.clone(), batch_size=4)
    half = pairwise_chamfer(x, batch_size=4)  # upper blocks only, mirrored
    assert torch.allclose(half, full) and torch.equal(half, half.T)
    assert torch.all(half.diagonal() == 0)


def test_mmd_cov_nna_on_hand_made_distances():
    d_sr = torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.4, 0.8]], dtype=torch.float64)
    mmd, cov = mmd_cov(d_sr)
    assert mmd == pytest.approx((0.1 + 0.4 + 0.8) / 3) and cov == pytest.approx(1 / 3)
    d_ss = torch.tensor([[0, 0.05], [0.05, 0]], dtype=torch.float64)  # samples closest to each other
    d_rr = torch.full((3, 3), 2.0, dtype=torch.float64)  # references far from each other
    nna, nna_s, nna_r = one_nna(d_sr, d_ss, d_rr)
    assert (nna_s, nna_r) == (1.0, 0.0) and nna == pytest.approx(2 / 5)


def test_jsd_of_identical_and_disjoint_occupancy():
    a = torch.zeros(3, 8, 8, 8, dtype=torch.bool)
    a[:, :4] = True
    b = torch.zeros(2, 8, 8, 8, dtype=torch.bool)
    b[:, 4:] = True
    assert jsd_occupancy(a, a, resolution=None, device="cpu") == pytest.approx(0.0, abs=1e-12)
    assert jsd_occupancy(a, b, resolution=None, device="cpu") == pytest.approx(math.log(2))  # natural log
    assert jsd_occupancy(a, b, resolution=4, device="cpu") == pytest.approx(math.log(2))
    assert jsd_from_counts(torch.tensor([1.0, 0]), torch.tensor([1.0, 1])) == pytest.approx(
        0.5 * (math.log(4 / 3)) + 0.5 * (0.5 * math.log(2 / 3) + 0.5 * math.log(2))
    )
    pts = torch.rand(4, 50, 3) * 0.5  # lower octant vs upper octant
    assert jsd_points(pts, pts) == pytest.approx(0.0, abs=1e-12)
    assert jsd_points(pts, pts + 0.5) == pytest.approx(math.log(2))


def test_coarse_cells_count_each_shape_once():
    occ = torch.zeros(1, 8, 8, 8, dtype=torch.bool)
    occ[0, 0, 0, :3] = True  # three voxels: x 0,1 -> cell 0 and x 2 -> cell 1 of a 4^3 grid
    coarse = coarse_occupancy(occ, 4)
    assert coarse.dtype == torch.bool and coarse.sum() == 2 and coarse[0, 0, 0, :2].all()
    three = coarse_occupancy(occ, 3)  # 8 -> 3 cells: voxel centres 0.5, 1.5, 2.5 of 8 -> cells 0, 0, 0
    assert three.sum() == 1 and three[0, 0, 0, 0]


def test_set_against_itself():
    shapes = random_shapes(8, RES, seed=0)
    report = evaluate_voxel_sets(shapes, shapes, points=POINTS, device="cpu")
    m = report.metrics
    assert m["mmd_cd"] == 0.0 and m["cov_cd"] == 1.0
    assert m["jsd"] == pytest.approx(0.0, abs=1e-12) and m["jsd_native"] == pytest.approx(0.0, abs=1e-12)
    assert m["nna_cd"] == 0.0  # each shape's nearest neighbour is its copy in the other set


def test_disjoint_halves_of_one_distribution():
    shapes = random_shapes(32, RES, seed=1)
    m = evaluate_voxel_sets(shapes[:16], shapes[16:], points=64, device="cpu").metrics
    assert 0.3 <= m["nna_cd"] <= 0.7  # indistinguishable sets: about 0.5
    assert m["cov_cd"] > 0.4 and 0 < m["jsd"] < 0.1 and m["mmd_cd"] > 0


def test_one_repeated_shape_against_a_varied_set():
    varied = random_shapes(10, RES, seed=2)
    repeated = random_shapes(1, RES, seed=99).expand(10, -1, -1, -1)  # one shape, 10 point samplings
    m = evaluate_voxel_sets(repeated, varied, points=64, device="cpu").metrics
    assert m["cov_cd"] <= 2 / 10  # about 1/M: only the sampling noise can pick another reference
    assert m["nna_cd_samples"] == 1.0  # copies are each other's nearest neighbours
    assert m["nna_cd"] >= 0.8  # near 1: only references like the repeated shape find a sample


def test_report_json_and_table(tmp_path):
    report = evaluate_voxel_sets(random_shapes(4, RES, 3), random_shapes(5, RES, 4), category="chair",
                                 points=32, device="cpu")
    loaded = json.loads(report.to_json(tmp_path / "r.json").read_text())
    assert loaded["category"] == "chair" and loaded["n_samples"] == 4 and loaded["n_references"] == 5
    assert set(loaded["metrics"]) >= {"jsd", "jsd_native", "mmd_cd", "cov_cd", "nna_cd"}
    assert loaded["settings"]["resolution"] == RES and loaded["settings"]["points"] == 32
    lines = report.table().splitlines()
    assert "MMD-CD" in lines[0] and lines[2].startswith("chair") and len(lines) == 3


def test_bad_sets_are_named():
    good = random_shapes(4, RES, 5)
    with pytest.raises(ValueError, match=r"resolution mismatch: a\.npy is 16\^3 but b\.npy is 8\^3"):
        evaluate_voxel_sets(good, random_shapes(4, 8, 5), names=("a.npy", "b.npy"), device="cpu")
    with pytest.raises(ValueError, match=r"b\.npy: 1 usable shape"):
        evaluate_voxel_sets(good, good[:1], names=("a.npy", "b.npy"), device="cpu")
    noisy = good.float() * 0.9
    with pytest.raises(ValueError, match=r"a\.npy: shape 0 holds the non-binary value 0\.9"):
        evaluate_voxel_sets(noisy, good, names=("a.npy", "b.npy"), device="cpu")
    assert evaluate_voxel_sets(noisy, good, threshold=0.5, points=16, device="cpu").metrics["mmd_cd"] >= 0
    nan = good.float()
    nan[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"b\.npy: NaN values in shape\(s\) \[2\]"):
        evaluate_voxel_sets(good, nan, names=("a.npy", "b.npy"), device="cpu")
    with pytest.raises(ValueError, match="non-finite point coordinates in clouds \\[1\\]"):
        shape_set_metrics(torch.rand(3, 8, 3), torch.rand(3, 8, 3).index_fill_(0, torch.tensor([1]), math.nan))


def test_empty_shapes_are_excluded_by_index_or_refused():
    shapes = random_shapes(5, RES, 6)
    shapes[[1, 3]] = False
    with pytest.warns(UserWarning, match=r"samples: 2 of 5 shapes are empty.*\[1, 3\]"):
        report = evaluate_voxel_sets(shapes, random_shapes(4, RES, 7), points=16, device="cpu", jsd_resolution=8)
    assert report.excluded == {"samples": [1, 3], "references": []} and report.n_samples == 3
    with pytest.raises(ValueError, match=r"samples: empty shapes .* \[1, 3\]"):
        evaluate_voxel_sets(shapes, random_shapes(4, RES, 7), empty="error", device="cpu")
    with pytest.raises(ValueError, match="at least 2"), pytest.warns(UserWarning):
        evaluate_voxel_sets(shapes[:2], random_shapes(4, RES, 7), device="cpu")  # one non-empty left


def test_command_line_with_reference_file_and_builtin_layout(tmp_path, capsys):
    samples, refs = random_shapes(6, RES, 8).numpy(), random_shapes(6, RES, 9).numpy()
    np.save(tmp_path / "samples.npy", samples.astype(np.float32))
    np.save(tmp_path / "ref.npy", refs)
    out = tmp_path / "report.json"
    args = ["chair", str(tmp_path / "samples.npy"), "--points", "32", "--device", "cpu", "--json", str(out)]
    assert main(args + ["--reference", str(tmp_path / "ref.npy")]) == 0
    by_file = json.loads(out.read_text())
    assert "chair" in capsys.readouterr().out and by_file["n_references"] == 6
    np.save(tmp_path / "ref_a.npy", refs[:2])  # the course's test + val files, read as one set
    np.save(tmp_path / "ref_b.npy", refs[2:])
    assert main(args + ["--reference", str(tmp_path / "ref_a.npy"), "--reference", str(tmp_path / "ref_b.npy")]) == 0
    assert json.loads(out.read_text())["metrics"] == by_file["metrics"]
    for i, grid in enumerate(refs):  # root/<category>/<sequence>/occupancy_16.npy, as the built-in set
        (tmp_path / "root" / "chair" / f"seq{i}").mkdir(parents=True)
        np.save(tmp_path / "root" / "chair" / f"seq{i}" / f"occupancy_{RES}.npy", grid)
    assert main(args + ["--data-source", f"builtin:{tmp_path / 'root'}"]) == 0
    assert json.loads(out.read_text())["metrics"] == by_file["metrics"]
    assert main(args + ["--reference-dir", str(tmp_path / "root" / "chair")]) == 0
    with pytest.raises(FileNotFoundError, match="no category 'table'"):
        main(["table", str(tmp_path / "samples.npy"), "--data-source", f"builtin:{tmp_path / 'root'}"])
    np.save(tmp_path / "root" / "chair" / "seq0" / "occupancy_8.npy", np.zeros((8, 8, 8), bool))
    with pytest.raises(ValueError, match=r"occupancy_8\.npy: occupancy of shape \(8, 8, 8\), expected \(16, 16, 16\)"):
        main(args + ["--reference-dir", str(tmp_path / "root")])


def test_bench_mode_runs_on_cpu(capsys):
    assert main(["--bench", "16", "--points", "32", "--bench-resolution", "16", "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["samples"] == 16 and line["device"] == "cpu" and line["seconds"]["total"] > 0
    assert set(line["metrics"]) >= {"jsd", "mmd_cd", "cov_cd", "nna_cd"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu():
    shapes = random_shapes(24, 32, 10)
    cpu = evaluate_voxel_sets(shapes[:12], shapes[12:], points=256, device="cpu").metrics
    gpu = evaluate_voxel_sets(shapes[:12], shapes[12:], points=256, device="cuda").metrics
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key


def test_chamfer_matches_pytorch3d():
    from pytorch3d.loss import chamfer_distance

    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 40, 3, generator=g), torch.rand(3, 25, 3, generator=g)
    expected, _ = chamfer_distance(x, y, batch_reduction=None)
    assert torch.allclose(chamfer_pairs(x, y), expected)
