"""The dashboard server: serves its UI offline, stores what the logger posts, stops cleanly."""

import json
import time
import urllib.request

import torch

from holo3d.viz.dashboard import DashboardProcess, dashboard_url
from holo3d.viz.visdom_logger import VisdomLogger


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def test_serves_page_and_local_static_files(dashboard):
    status, page = _get(dashboard_url(dashboard.port, "some_env"))
    assert status == 200 and b"plotly-plotly.min.js" in page
    for asset in ("js/plotly-plotly.min.js", "js/react-react.min.js", "js/jquery.min.js",
                  "js/mathjax/2.7.5/MathJax.js", "css/bootstrap.min.css", "js/main.js"):
        status, body = _get(f"{dashboard.url}/static/{asset}")
        assert status == 200 and len(body) > 1000, asset


def test_logger_posts_land_in_the_experiment_env(dashboard, tmp_path):
    logger = VisdomLogger(tmp_path / "exp_42", port=dashboard.port)
    for step in range(4):
        logger.log_scalars(step, {"loss": 1.0 / (step + 1), "lr": 1e-3})
    logger.log_scalars(3, {"loss": 0.4}, split="val")
    logger.log_images(3, {"render": torch.rand(3, 8, 8), "mask": torch.rand(1, 8, 8)})
    logger.log_video(3, "sample", torch.rand(3, 3, 8, 8))
    logger.close()  # flushes and asks the server to save the env to disk
    assert logger.poster.delivered > 0 and not logger.poster.warned

    saved = json.loads((dashboard.env_path / "exp_42.json").read_text())["jsons"]
    traces = {t["name"]: t["x"] for t in saved["scalar_loss"]["content"]["data"]}
    assert traces == {"train": [0, 1, 2, 3], "val": [3]}
    assert saved["image_render"]["type"] == "image" and saved["image_mask"]["type"] == "image"
    assert "data:image/gif;base64," in saved["video_sample"]["content"]


def test_cli_prints_url_and_stops_cleanly_on_sigterm(tmp_path, visdom_static):
    log = tmp_path / "dashboard.log"
    server = DashboardProcess(env_path=tmp_path / "envs", log_path=log).start(timeout=60)
    start = time.monotonic()
    code = server.stop()
    assert code == 0 and time.monotonic() - start < 5
    text = log.read_text()
    assert f"http://127.0.0.1:{server.port}" in text and "stopped" in text
    assert (tmp_path / "envs").is_dir()
