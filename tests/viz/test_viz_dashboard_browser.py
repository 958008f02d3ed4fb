"""The dashboard in a real headless Chromium: the panels the training loop posts must render.

Served offline from the npm-installed static files on a loopback port; the page's own JS (React,
Plotly) has to run for any panel to appear, so a DOM with plots and images proves the whole chain:
logger thread -> visdom server -> browser.
"""

from __future__ import annotations


import pytest
import torch

from holo3d.viz.dashboard import dashboard_url
from holo3d.viz.grid_visualization import depth_to_image, feature_grid_pca_image
from holo3d.viz.visdom_logger import VisdomLogger
from viz_chromium import HeadlessChromium

SCALARS = ("loss", "loss_rgb", "psnr", "lr", "sec_per_it", "gpu_mem_gib")
IMAGES = ("target", "render", "depth", "mask", "feature_grid_pca")

# One record per visdom window: its title, whether Plotly drew it, legend entries, images shown.
_WINDOWS_JS = """
(() => [...document.querySelectorAll('.react-grid-item .window')].map(w => ({
  title: (w.querySelector('.bar div.pull-right') || {textContent: ''}).textContent.trim(),
  plotted: !!w.querySelector('.js-plotly-plot svg.main-svg .scatterlayer .trace'),
  legend: [...w.querySelectorAll('.legendtext')].map(e => e.textContent),
  png: [...w.querySelectorAll('img[src^="data:image/png"]')]
         .filter(i => i.complete && i.naturalWidth > 0).length,
  gif: [...w.querySelectorAll('img[src^="data:image/gif"]')]
         .filter(i => i.complete && i.naturalWidth > 0).length,
})))()
"""


def fake_scalars(step: int, split: str) -> dict:
    """Plausible curves: losses fall, PSNR rises, val a little worse than train."""
    worse = 1.15 if split == "val" else 1.0
    values = {"loss": worse / (step + 1), "loss_rgb": 0.8 * worse / (step + 1),
              "psnr": 12.0 + step / worse}
    if split == "train":
        values.update(lr=1e-4 * 0.9 ** step, sec_per_it=0.2 + 0.01 * (step % 2), gpu_mem_gib=3.1)
    return values

_LAYOUT_JS = """JSON.stringify([...document.querySelectorAll('.react-grid-item')].map(e => {
  const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }))"""


def post_training_panels(logger: VisdomLogger, steps: int = 6) -> None:
    """What the training loop posts: scalar curves (train every step, val every other), the
    target/render/depth/mask panels, the feature-grid PCA and a sample clip."""
    gen = torch.Generator().manual_seed(0)
    for step in range(steps):
        logger.log_scalars(step, fake_scalars(step, "train"))
        if step % 2 == 0:
            logger.log_scalars(step, fake_scalars(step, "val"), split="val")
    target = torch.rand(3, 48, 48, generator=gen)
    depth = torch.rand(1, 48, 48, generator=gen)
    logger.log_images(steps - 1, {
        "target": target, "render": target.flip(-1), "depth": depth_to_image(depth),
        "mask": (depth > 0.5).float(),
        "feature_grid_pca": feature_grid_pca_image(torch.randn(8, 8, 12, 12, generator=gen)),
    })
    logger.log_video(steps - 1, "sample_video", torch.rand(6, 3, 32, 32, generator=gen))


def _windows_by_title(browser: HeadlessChromium) -> dict:
    return {w["title"].split("  (step")[0]: w for w in browser.evaluate(_WINDOWS_JS)}


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_dashboard_shows_training_panels(dashboard, chromium_executable, artifact_dir, tmp_path):
    logger = VisdomLogger(tmp_path / "browser_run", port=dashboard.port)
    post_training_panels(logger)
    logger.close()
    assert not logger.poster.warned and logger.poster.dropped == 0

    expected = len(SCALARS) + len(IMAGES) + 1
    with HeadlessChromium(chromium_executable, tmp_path / "chromium-profile") as browser:
        browser.navigate(dashboard_url(dashboard.port, logger.env))
        browser.wait_for(f"(() => {{ const w = {_WINDOWS_JS}; return w.length >= {expected} && "
                         "w.filter(x => x.plotted).length >= "
                         f"{len(SCALARS)} && w.filter(x => x.png).length >= {len(IMAGES)}; }})()",
                         timeout=60)
        browser.wait_until_stable(_LAYOUT_JS)  # react-grid-layout animates windows into place
        windows = _windows_by_title(browser)
        shot = browser.screenshot(artifact_dir / "dashboard_panels.png")
        errors = browser.console_errors
    print(f"dashboard screenshot: {shot}")

    assert set(SCALARS) | set(IMAGES) | {"sample_video"} <= set(windows), sorted(windows)
    loss = windows["loss"]
    assert loss["plotted"] and loss["legend"] == ["train", "val"]
    assert all(windows[name]["plotted"] for name in SCALARS)
    assert all(windows[name]["png"] == 1 for name in IMAGES)
    assert windows["sample_video"]["gif"] == 1
    assert not errors, errors
    assert shot.stat().st_size > 10_000


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_dashboard_during_real_training_iterations(dashboard, chromium_executable, artifact_dir,
                                                   tmp_path):
    """A few iterations of the real training loop (tiny test model) post curves and panels."""
    from holo3d.train.config_cli import compose_config
    from holo3d.train.experiment import Experiment

    loop = "training_loop_HoloTrainingLoop_args"
    exp_dir = tmp_path / "tiny_training_run"
    cfg = compose_config("base", [
        f"exp_dir={exp_dir}", "data_source_class_type=TinyTestDataSource",
        "model_factory_HoloModelFactory_args.model_class_type=TinyTestModel",
        f"{loop}.max_epochs=3", f"{loop}.logger=visdom", f"{loop}.visdom_port={dashboard.port}",
        f"{loop}.log_interval=1", f"{loop}.visualize_interval=2",
    ])
    Experiment(**cfg).run(cfg)
    env = exp_dir.name
    with HeadlessChromium(chromium_executable, tmp_path / "chromium-profile") as browser:
        browser.navigate(dashboard_url(dashboard.port, env))
        browser.wait_for(f"(() => {{ const w = {_WINDOWS_JS}; return w.filter(x => x.plotted).length >= 2"
                         " && w.filter(x => x.png).length >= 1; })()", timeout=60)
        browser.wait_until_stable(_LAYOUT_JS)
        windows = _windows_by_title(browser)
        browser.screenshot(artifact_dir / "dashboard_training_run.png")
        errors = browser.console_errors
    assert windows["objective"]["plotted"] and windows["objective"]["legend"] == ["train", "val"]
    assert windows["psnr"]["plotted"] and windows["sec_per_it"]["plotted"]
    assert windows["render"]["png"] == 1
    assert not errors, errors
