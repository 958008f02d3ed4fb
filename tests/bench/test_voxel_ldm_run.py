"""The voxel latent diffusion GPU run (holo3d/bench/voxel_ldm_run.py): its pieces on toy shapes, and
the --tiny smoke run end to end on the CPU (data, both trainers under timeout, evaluation)."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from holo3d.bench import voxel_ldm_run as vr
from holo3d.sample.contact_sheet import write_png

R = 16
BUDGET_MIN = 2.5  # minutes of the tiny end-to-end run


def cubes(n: int, side: int = 6) -> torch.Tensor:
    """(n, R, R, R) bool solid cubes, shifted one voxel apart."""
    out = torch.zeros(n, R, R, R, dtype=torch.bool)
    for i in range(n):
        o = 2 + i % 4
        out[i, o:o + side, o:o + side, o:o + side] = True
    return out


def slabs(n: int) -> torch.Tensor:
    """(n, R, R, R) bool thin horizontal slabs: far from cubes in Chamfer distance."""
    out = torch.zeros(n, R, R, R, dtype=torch.bool)
    for i in range(n):
        out[i, 2:14, 7 + i % 3, 2:14] = True
    return out


def test_parse_train_log_reads_epochs_and_the_stop_iteration(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "2026-01-01 00:00:00,000 INFO holo3d.train.training_loop: epoch 0 train: objective=0.6 iou=0.1 sec_per_it=0.9\n"
        "2026-01-01 00:00:01,000 INFO holo3d.train.training_loop: epoch 1 val: objective=0.5 iou=0.2\n"
        "2026-01-01 00:00:01,000 INFO holo3d.train.training_loop: epoch 1 train: objective=0.4 sec_per_it=0.02\n"
        "2026-01-01 00:00:02,000 INFO holo3d.train.training_loop: epoch 2 train: objective=0.3 sec_per_it=0.04\n"
        "2026-01-01 00:00:03,000 INFO holo3d.train.training_loop: epoch 3 train: objective=0.2 sec_per_it=5\n"
        "2026-01-01 00:00:03,000 WARNING holo3d.train.training_loop: stopped by signal SIGTERM at epoch 3, "
        "iteration 37; checkpoint x written.\n")
    parsed = vr.parse_train_log(log)
    assert [e["epoch"] for e in parsed["train"]] == [0, 1, 2, 3]
    assert parsed["val"] == [{"epoch": 1, "objective": 0.5, "iou": 0.2}]
    assert parsed["stop_iteration"] == 37

    (tmp_path / "expconfig.yaml").write_text("data_source_VoxelDataSource_args:\n  batch_size: 8\n")
    figures = vr.training_figures(tmp_path, wall_s=10.0)
    # the first (start-up) and last (stopped) epochs are left out of the median
    assert figures["sec_per_it_median"] == pytest.approx(0.03)
    assert figures["samples_per_s"] == pytest.approx(8 / 0.03)
    assert figures["samples_per_s_wall"] == pytest.approx(37 * 8 / 10.0)


def test_affordable_samples_follow_the_measured_cost():
    assert vr.affordable(1000, (0.01, 5.0), seconds=100.0, minimum=8) == 1000
    assert vr.affordable(1000, (0.1, 5.0), seconds=55.0, minimum=8) == 500
    assert vr.affordable(1000, (1.0, 50.0), seconds=10.0, minimum=8) == 8


def test_train_subsets_are_disjoint_and_of_the_asked_size():
    shapes = torch.arange(23).view(23, 1, 1, 1).expand(23, 2, 2, 2)
    subsets = vr.train_subsets(shapes, size=5, max_subsets=10)
    assert len(subsets) == 4 and all(s.shape[0] == 5 for s in subsets)
    ids = torch.cat([s[:, 0, 0, 0] for s in subsets])
    assert ids.unique().numel() == 20


def test_class_check_finds_each_category_and_counts_empty_samples_as_misses():
    heldout = {"cube": cubes(4), "slab": slabs(3)}
    train = {"cube": cubes(4), "slab": slabs(4)}
    samples = {"cube": torch.cat([cubes(3), torch.zeros(1, R, R, R, dtype=torch.bool)]),
               "slab": torch.cat([slabs(2), cubes(2)])}
    checks = vr.class_check(samples, heldout, train, points=128, device=torch.device("cpu"))
    assert checks["cube"]["empty"] == 1
    assert checks["cube"]["fraction_nearest_is_label"] == pytest.approx(0.75)
    assert checks["slab"]["fraction_nearest_is_label"] == pytest.approx(0.5)
    assert checks["slab"]["nearest_counts"] == {"cube": 2, "slab": 2}
    assert checks["cube"]["train_subset_fraction"] == 1.0


def test_set_metrics_of_a_set_against_itself_are_perfect_fidelity():
    refs = cubes(4)
    out = vr.set_metrics([refs.clone()], refs, points=64, device=torch.device("cpu"))
    assert out["mean"]["mmd_cd"] == pytest.approx(0.0, abs=1e-9)
    assert out["mean"]["cov_cd"] == 1.0
    assert out["subsets"] == 1 and out["subset_size"] == 4


def test_combine_sheets_stacks_the_blocks(tmp_path):
    paths = []
    for i, (h, w) in enumerate([(20, 30), (10, 40)]):
        paths.append(write_png(tmp_path / f"s{i}.png", torch.full((3, h, w), 0.5)))
    out = vr.combine_sheets(paths, ["a", "b"], tmp_path / "all.png")
    from PIL import Image

    image = Image.open(out)
    assert image.size == (40, 20 + 10 + 2 * 14)


def test_process_age_is_positive():
    assert 0.0 < vr.process_age_s() < 3600 * 24 * 365


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    # a longer budget than --tiny's default: its evaluation stages must fit on a loaded CI machine
    report = vr.main(["--tiny", "--minutes", str(BUDGET_MIN), "--out", str(out), "--work", str(work)])
    assert sorted(p.name for p in out.iterdir()) == ["ae_train.log", "contact_sheet.png", "ldm_train.log",
                                                      "metrics.json", "run.log"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["failed_stages"] == [] and report["failed_stages"] == []
    assert {s["status"] for s in saved["stages"].values()} <= {"ok", "skipped"}
    # the stages are time-boxed to the budget; on a loaded CI machine the fixed costs (imports,
    # subprocess start-up) overrun it, so this only catches a stage that ignores its box
    assert saved["elapsed_s"] < 2 * 60 * BUDGET_MIN
    assert saved["data"]["writer_needs_renders"] is False and saved["data"]["image_files"] == 0
    # stage 1 stopped by SIGTERM; its stop checkpoint is what VoxelLDM and the evaluation load
    finish = saved["training"]["ae"].get("finish_epoch")  # readers see the stop checkpoint now: may not run
    assert finish is None or finish["exit"] == 0
    used = saved["ae_reconstruction"]["checkpoint"]
    assert used.endswith(".pth")  # the newest checkpoint, a stop's mid-epoch one included
    for stage in ("ae", "ldm"):
        figures = saved["training"][stage]
        assert figures["exit"] in (0, 124) and figures["iterations"] > 0
        assert figures["samples_per_s"] > 0 and figures["samples_per_s_wall"] > 0
    categories = saved["settings"]["categories"]
    for key in ("iou_heldout", "iou_train_subset"):
        assert all(0.0 <= saved["ae_reconstruction"][key][c] <= 1.0 for c in categories + ["all"])
    # the first category is always sampled; later ones only while the budget lasts (a loaded machine
    # runs out of it), and a skipped one says so
    sampled = [c for c in categories if "num_samples" in saved["generation"][c]]
    assert sampled[:1] == categories[:1]
    assert all("out of time" in saved["generation"][c]["skipped"] for c in categories if c not in sampled)
    for category in sampled:
        assert saved["generation"][category]["num_samples"] >= 4
        for name in ("samples", "train_subset", "ae_reconstructions"):
            metrics = saved["shape_metrics"][category][name]["mean"]
            assert 0.0 <= metrics["cov_cd"] <= 1.0 and 0.0 <= metrics["nna_cd"] <= 1.0
            assert 0.0 <= metrics["jsd"] <= math.log(2) and metrics["mmd_cd"] >= 0.0
        check = saved["class_check"][category]
        assert 0.0 <= check["fraction_nearest_is_label"] <= 1.0 and 0.0 <= check["train_subset_fraction"] <= 1.0
        assert sum(check["nearest_counts"].values()) + check["empty"] == check["n"]
        assert all(0.0 <= v <= 1.0 for k, v in saved["occupied_fraction"][category].items() if k != "empty_samples")
    if saved["stages"]["speed_1000"]["status"] == "ok":
        speed = saved["speed_1000"]
        assert speed["samples_per_s"] > 0 and speed["num_samples"] == vr.TINY.speed_samples
        assert "samples_per_s" in speed["direct_model_sample"] or "skipped" in speed["direct_model_sample"]
    args = vr.parse_args(["--tiny", "--out", str(out), "--work", str(work)])
    vr.resolve(args)
    assert vr.direct_sampling(vr.TINY, args, work / "exp" / "ldm")["samples_per_s"] > 0
    samples = np.load(work / "samples" / categories[0] / "samples.npy")
    assert samples.shape[1:] == (R, R, R) and samples.dtype == np.bool_
    assert all(k in saved["definitions"] for k in ("data.image_files", "training.*.samples_per_s"))


def test_output_resolution_reaches_data_and_both_stages(tmp_path):
    args = vr.parse_args(["--tiny", "--out", str(tmp_path / "o"), "--work", str(tmp_path / "w"),
                          "--output-resolution", str(2 * R)])
    settings = vr.resolve(args)
    assert settings.resolution == 2 * R and vr.TINY.resolution == R  # the samples' and metrics' side
    run = SimpleNamespace(work=tmp_path / "w")
    assert vr.data_root(run, args).name.endswith(f"_r{2 * R}")
    ae = vr.trainer_overrides(run, settings, args, "ae", tmp_path, epochs=1)
    ldm = vr.trainer_overrides(run, settings, args, "ldm", tmp_path, epochs=1)
    data_side = f"data_source_VoxelDataSource_args.resolution={2 * R}"
    assert data_side in ae and data_side in ldm
    assert any(o.endswith(f"VoxelAutoencoderModel_args.output_resolution={2 * R}") for o in ae)
    assert not any("VoxelAutoencoderModel_args" in o for o in ldm)
    with pytest.raises(SystemExit, match="--output-resolution 24"):
        vr.resolve(vr.parse_args(["--tiny", "--out", "o", "--output-resolution", "24"]))
    plain = vr.parse_args(["--tiny", "--out", "o", "--output-resolution", str(R)])
    assert vr.resolve(plain).resolution == R and plain.output_resolution == 0
