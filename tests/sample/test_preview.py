"""The training monitor's preview video (GenerativeModel.preview_frames): shape, range, and no side effects on the model or the RNG."""

import torch

from holo3d.sample.experiment_loader import load_experiment


def test_preview_video_is_small_deterministic_and_side_effect_free(trained_experiment):
    model = load_experiment(str(trained_experiment)).model.train()
    rng = torch.get_rng_state()
    frames = model.preview_frames(n_frames=5, image_size=16, steps=2)
    assert frames.shape == (5, 3, 16, 16) and 0 <= frames.min() <= frames.max() <= 1
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    torch.testing.assert_close(model.preview_frames(n_frames=5, image_size=16, steps=2), frames)
