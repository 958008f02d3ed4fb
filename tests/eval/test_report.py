"""metrics.json: per-sequence means, their mean, strict JSON, LPIPS skipped with one clear line."""

import json

import pytest
import torch

from holo3d.eval.lpips_metric import lpips, lpips_unavailable_reason, lpips_weights_path
from holo3d.eval.report import MetricsReport, write_metrics_json


def test_report_means_and_strict_json(tmp_path):
    report = MetricsReport()
    report.add_sequence("a", {"psnr": torch.tensor([20.0, 22.0]), "psnr_fg": torch.tensor([float("nan"), 10.0])})
    report.add_sequence("b", {"psnr": torch.tensor([30.0]), "psnr_fg": torch.tensor([float("nan")])})
    report.skip("lpips", "LPIPS skipped: no weights")
    assert report.per_sequence["a"] == {"psnr": 21.0, "psnr_fg": 10.0, "n_views": 2}
    mean = report.mean()
    assert mean["psnr"] == pytest.approx(25.5)  # sequences weigh the same
    assert mean["psnr_fg"] == pytest.approx(10.0)  # NaN sequences left out
    path = write_metrics_json(tmp_path / "metrics.json", report.to_dict({"split": "test"}))
    loaded = json.loads(path.read_text())  # strict JSON: NaN became null
    assert loaded["per_sequence"]["b"]["psnr_fg"] is None
    assert loaded["n_sequences"] == 2 and loaded["split"] == "test"
    assert set(loaded) >= {"mean", "per_sequence", "skipped"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_lpips_is_skipped_with_one_line_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reason = lpips_unavailable_reason("alex")
    assert reason is not None and "\n" not in reason
    assert str(lpips_weights_path("alex")) in reason and str(tmp_path) in reason
    with pytest.raises(FileNotFoundError, match="LPIPS skipped"):
        lpips(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
