"""The loggers never block or raise into training; TensorBoard writes readable event files."""

import logging
import socket
import threading
import time

import pytest
import torch

from holo3d.viz.background_poster import BackgroundPoster
from holo3d.viz.dashboard import free_port
from holo3d.viz.gif_encoding import encode_gif
from holo3d.viz.logger_base import ExperimentLogger
from holo3d.viz.logger_factory import make_logger
from holo3d.viz.tensorboard_logger import TensorBoardLogger
from holo3d.viz.visdom_logger import VisdomLogger, env_name_from_exp_dir


def _poster_warnings(caplog):
    return [r for r in caplog.records
            if r.name == "holo3d.viz.background_poster" and r.levelno == logging.WARNING]


def test_dead_server_never_blocks_and_warns_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    logger = VisdomLogger(tmp_path / "run", port=free_port())  # nobody listens there
    start = time.perf_counter()
    for step in range(1000):
        logger.log_scalars(step, {"loss": 1.0 / (step + 1), "psnr": 20.0})
    logger.log_images(999, {"render": torch.rand(3, 16, 16)})
    logger.log_video(999, "sample", torch.rand(4, 3, 8, 8))
    posting = time.perf_counter() - start
    logger.close()
    total = time.perf_counter() - start
    assert posting < 0.5, f"1000 log calls took {posting:.2f} s"
    assert total < 5.0, f"close took {total - posting:.2f} s on a dead server"
    assert len(_poster_warnings(caplog)) == 1
    assert logger.poster.delivered == 0


def test_unresponsive_server_is_cut_off_by_the_timeout(tmp_path, caplog):
    """A server that accepts connections but never answers (the case a timeout exists for)."""
    caplog.set_level(logging.WARNING)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes handshakes; nobody ever reads or replies
        logger = VisdomLogger(tmp_path / "run", port=listener.getsockname()[1], timeout_s=0.5)
        start = time.perf_counter()
        for step in range(100):
            logger.log_scalars(step, {"loss": 1.0})
        assert time.perf_counter() - start < 0.2
        logger.close()
        assert time.perf_counter() - start < 4.0
    assert len(_poster_warnings(caplog)) == 1


def test_poster_queue_is_bounded_and_drops_the_oldest():
    release = threading.Event()
    seen = []

    def deliver(client, batch):
        release.wait(5)
        seen.extend(batch)

    poster = BackgroundPoster(lambda: object(), deliver, "test", max_pending=10)
    poster.submit(-1)  # the worker takes this one and then blocks in deliver
    time.sleep(0.1)
    for i in range(100):
        poster.submit(i)
    release.set()
    poster.close()
    assert seen == [-1, *range(90, 100)]
    assert poster.dropped == 90


def test_env_is_named_from_exp_dir(tmp_path):
    assert env_name_from_exp_dir(tmp_path / "holo_base run#3") == "holo_base-run-3"
    assert VisdomLogger(tmp_path / "abc", port=free_port(), env="mine").env == "mine"


def test_tensorboard_event_files_are_readable(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = make_logger("tensorboard", tmp_path)
    assert isinstance(logger, TensorBoardLogger)
    for step in range(3):
        logger.log_scalars(step, {"loss": 1.0 / (step + 1), "lr": 1e-4})
        logger.log_scalars(step, {"loss": 2.0 / (step + 1)}, split="val")
    logger.log_images(2, {"render": torch.rand(3, 8, 8), "mask": torch.rand(1, 8, 8)})
    logger.log_video(2, "sample", torch.rand(5, 3, 8, 8))
    logger.close()

    train = EventAccumulator(str(tmp_path / "tensorboard" / "train"), size_guidance={"images": 0})
    val = EventAccumulator(str(tmp_path / "tensorboard" / "val"))
    train.Reload(), val.Reload()
    assert [e.step for e in train.Scalars("loss")] == [0, 1, 2]
    assert [e.value for e in val.Scalars("loss")] == pytest.approx([2.0, 1.0, 2.0 / 3])
    assert set(train.Tags()["images"]) == {"render", "mask", "sample"}
    assert train.Images("sample")[0].encoded_image_string.startswith(b"GIF8")


def test_tensorboard_bad_input_warns_once_and_does_not_raise(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    logger = TensorBoardLogger(tmp_path)
    logger.log_images(0, {"bad": torch.rand(5, 4, 4)})
    logger.log_images(1, {"bad": torch.rand(5, 4, 4)})
    logger.close()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_factory_kinds(tmp_path):
    assert type(make_logger("none", tmp_path)) is ExperimentLogger
    with pytest.raises(ValueError, match="unknown logger"):
        make_logger("mlflow", tmp_path)


def test_gif_encoding_is_animated():
    from PIL import Image
    import io

    gif = encode_gif(torch.rand(7, 1, 10, 12), fps=10)
    with Image.open(io.BytesIO(gif)) as im:
        assert im.format == "GIF" and im.n_frames == 7 and im.size == (12, 10)


def test_malformed_input_is_skipped_with_one_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    logger = VisdomLogger(tmp_path / "run", port=free_port())
    logger.log_images(0, {"bad": torch.rand(5, 4, 4)})  # 5 channels
    logger.log_video(0, "bad", torch.rand(4, 4))  # not (T, C, H, W)
    logger.log_scalars(0, {"loss": "not a number"})
    logger.close()
    skipped = [r for r in caplog.records if r.name == "holo3d.viz.visdom_logger"]
    assert len(skipped) == 1 and "skipped" in skipped[0].getMessage()
