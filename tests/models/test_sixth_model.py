"""A sixth model added as docs/ARCHITECTURE.md says (one model class + a config), then trained,
resumed, sampled and written as videos through the unchanged train/, sample/ and eval/ code.

The model, TinyImageDDPM (tests/models/tiny_image_ddpm.py, registered by tests/conftest.py), is a 2D
image DDPM (eps prediction) on the images of the trainer's tiny data source.
"""

import torch

from holo3d.eval import psnr
from holo3d.sample.generate import generate_samples
from holo3d.sample.script_config import SampleConfig
from holo3d.train.checkpoint import load_latest_checkpoint
from holo3d.train.config_cli import compose_config
from holo3d.train.experiment import Experiment


OVERRIDES = [
    "data_source_class_type=TinyTestDataSource",
    "model_factory_HoloModelFactory_args.model_class_type=TinyImageDDPM",
    "training_loop_HoloTrainingLoop_args.logger=none",
    "training_loop_HoloTrainingLoop_args.ema_decay=0.9",
    "optimizer_factory_HoloOptimizerFactory_args.lr=0.01",
    "optimizer_factory_HoloOptimizerFactory_args.warmup_iters=1",
    "data_source_TinyTestDataSource_args.dataset_length_train=10",
]


def _train(exp_dir, epochs):
    cfg = compose_config("base", [f"exp_dir={exp_dir}", *OVERRIDES,
                                  f"training_loop_HoloTrainingLoop_args.max_epochs={epochs}"])
    Experiment(**cfg).run(cfg)


def test_a_new_model_trains_resumes_samples_and_writes_videos(tmp_path):
    _train(tmp_path / "straight", 4)
    _train(tmp_path / "split", 2)
    _train(tmp_path / "split", 4)  # resumes from epoch 2
    straight, split = load_latest_checkpoint(tmp_path / "straight"), load_latest_checkpoint(tmp_path / "split")
    assert straight["iteration"] == split["iteration"] == 40
    for name, tensor in straight["model"].items():
        torch.testing.assert_close(split["model"][name], tensor)

    cfg = SampleConfig(exp_dir=str(tmp_path / "split"), num_samples=3, batch_size=2, sampler="ddim", steps=10,
                       render_size=[8, 8], video_size=[16, 16], device="cpu",
                       progressive_sampling_steps_per_render=2)
    out = generate_samples(cfg)
    names = sorted(p.name for p in out.iterdir())
    for i in range(3):
        assert f"sample_{i:03d}.mp4" in names and f"sample_{i:03d}_progressive.mp4" in names
    assert "contact_sheet.png" in names and "manifest.json" in names

    # eval/: at t = T/4 the trained model's x0 estimate of held-in images is closer to them than the
    # untrained model's (PSNR from holo3d.eval): learning happened.
    cfg = compose_config("base", [f"exp_dir={tmp_path / 'fresh'}", *OVERRIDES])
    untrained = Experiment(**cfg).model_factory.model.eval()
    trained = Experiment(**cfg).model_factory.model.eval()
    trained.load_state_dict(split["ema"])
    source = Experiment(**cfg).data_source
    images = next(iter(source.get_datasets_and_dataloaders()[1].train)).image_rgb  # (B, 3, H, W)
    x0 = images * 2 - 1
    t = torch.full((x0.shape[0],), trained.num_steps // 4)
    x_t = trained.diffusion.noise(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        estimates = [m.diffusion.to_x0(m._eps(x_t, t), x_t, t).clamp(-1, 1) for m in (untrained, trained)]
    before, after = (psnr((e + 1) / 2, images).mean() for e in estimates)
    assert after > before + 3, (before, after)
