"""The loader-throughput bench generates a missing built-in set and reports objects/s per worker count."""

import json

from holo3d.bench.loader_throughput import main


def test_loader_throughput_reports_objects_per_second(tmp_path, capsys):
    main(["--format", "nmr", "--root", str(tmp_path / "nmr"), "--preset", "tiny", "--workers", "0",
          "--scenes", "2", "--frames", "4", "--batches", "3", "--device", "cpu"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and lines[0]["workers"] == 0 and lines[0]["format"] == "nmr"
    assert lines[0]["objects_per_s"] > 0 and abs(lines[0]["frames_per_s"] - 4 * lines[0]["objects_per_s"]) < 1
