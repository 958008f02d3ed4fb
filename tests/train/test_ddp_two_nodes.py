"""Two-"node" DDP on CPU (issue 20): two torchrun agents on localhost (``--nnodes 2 --node_rank 0/1``,
c10d rendezvous on a free port), one gloo process each, running tests/train/ddp_worker.py.

1. Gradients: one DDP step of each system's tiny config (the loop's accelerate/DDP settings), each
   rank on half of the first batch with its RNGs seeded ``seed + rank``, gives on both ranks the mean
   of the two halves' gradients replayed in this single process with the same seeds.
2. A real ``Experiment.run`` (TinyTestModel on the real multi-scene loader): rank 0 alone writes
   checkpoints, config and log (a Python audit hook lists every write of each rank); a second
   launch with more epochs resumes on both ranks from the same checkpoint and finishes.
3. Seeds: initial weights agree on both ranks; data order and noise draws differ per rank.

Four of these tests found bugs in holo3d/train, fixed since: rank 1 wrote train.log; a resumed run
repeated epoch 0's batches under accelerate's sharded loader; all ranks resumed rank 0's RNG states;
epoch-based LR schedules counted the unsharded loader's length.

Fast set (~90 s on 2 shared cores, two launches' start-up most of it): HoloDiffusion's demo and
TinyImageDDPM gradients, the runs.
Slow set: GeNVS, ViewFusion, the voxel autoencoder and the voxel LDM gradients.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ddp_worker
from holo3d.data.synthetic.builtin import ROOT_ENV, ensure_builtin_dataset
from holo3d.train.checkpoint import load_checkpoint_file
from holo3d.train.config_cli import compose_config
from holo3d.train.experiment import Experiment

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(ddp_worker.__file__)
FAST_CASES = ["holo_diffusion", "tiny_image_ddpm"]
SLOW_CASES = ["genvs", "viewfusion", "voxel_ae", "voxel_ldm"]
LOOP = "training_loop_HoloTrainingLoop_args"
LDM = "model_factory_HoloModelFactory_args.model_VoxelLDM_args"
_LAUNCH_ENV_DROPPED = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                       "TORCHELASTIC_RUN_ID", "GROUP_RANK", "ROLE_RANK")


# ---- launching -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env(data_root: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_ENV_DROPPED}
    # one thread per process (2 shared cores); gloo over loopback; the built-in data made here
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONUNBUFFERED="1",
               **{ROOT_ENV: data_root})
    return env


def launch_two_nodes(worker_args, logs: Path, env: dict, timeout: float = 300) -> None:
    """Runs the worker as two single-process torchrun "nodes" meeting at 127.0.0.1:<free port>."""
    logs.mkdir(parents=True, exist_ok=True)
    port, run_id = free_port(), f"holo3d-test-{os.getpid()}-{logs.name}"
    agents = []
    for node_rank in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                   "--node_rank", str(node_rank), "--rdzv-backend", "c10d", "--rdzv-endpoint",
                   f"127.0.0.1:{port}", "--rdzv-id", run_id, "--max-restarts", "0", str(WORKER),
                   *worker_args]
        log = open(logs / f"node{node_rank}.log", "w")
        agents.append((subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        codes = [agent.wait(timeout=timeout) for agent, _ in agents]
    finally:
        for agent, log in agents:
            if agent.poll() is None:
                agent.kill()
            log.close()
    if codes != [0, 0]:
        tails = "\n".join(f"--- node {r} (exit {c}):\n" + (logs / f"node{r}.log").read_text()[-3000:]
                          for r, c in enumerate(codes))
        raise RuntimeError(f"torchrun nodes failed:\n{tails}")  # not an xfail-able AssertionError


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The built-in "tiny" preset in CO3D format (HoloDiffusion, TinyTestModel runs), made once;
    $HOLO3D_DATA_ROOT points here for this module (workers and the in-process references)."""
    root = str(tmp_path_factory.mktemp("builtin_data"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ROOT_ENV, root)
        ensure_builtin_dataset(preset="tiny")
        yield root


# ---- the launches ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_launch(data_root, tmp_path_factory):
    """The fast cases' gradients, then the "straight" (2 epochs) and "split" (1 epoch) training runs,
    in the same two processes (a launch costs ~15 s of start-up). -> the results folder."""
    out = tmp_path_factory.mktemp("first_launch")
    jobs = [*(f"grads:{case}" for case in FAST_CASES), f"train:straight:2:{out / 'straight'}",
            f"train:split:1:{out / 'split'}"]
    launch_two_nodes(["--out", str(out), *jobs], out / "logs", launch_env(data_root))
    return out


@pytest.fixture(scope="module")
def fast_grads(first_launch):
    return first_launch, {}


@pytest.fixture(scope="module")
def slow_grads(data_root, tmp_path_factory):
    for fmt in ("srn", "voxels"):
        ensure_builtin_dataset(preset="tiny", fmt=fmt)
    autoencoder = tmp_path_factory.mktemp("voxel_ae")  # the LDM's frozen stage 1: one epoch is enough
    cfg = compose_config("voxel_ae_demo", [f"exp_dir={autoencoder}", f"{LOOP}.max_epochs=1"])
    Experiment(**cfg).run(cfg)
    extra = {"voxel_ldm": [f"{LDM}.autoencoder_exp_dir={autoencoder}"]}
    out = tmp_path_factory.mktemp("slow_grads")
    launch_two_nodes(["--out", str(out), "--extra", json.dumps(extra), *(f"grads:{c}" for c in SLOW_CASES)],
                     out / "logs", launch_env(data_root))
    return out, extra


@pytest.fixture(scope="module")
def runs(first_launch, data_root):
    """The "split" run resumed to 2 epochs in a second launch. -> (folder, {(run, rank): report})."""
    launch_two_nodes(["--out", str(first_launch), f"train:resumed:2:{first_launch / 'split'}"],
                     first_launch / "logs_resume", launch_env(data_root))
    reports = {(run, rank): json.loads((first_launch / f"{run}_rank{rank}.json").read_text())
               for run in ("straight", "split", "resumed") for rank in (0, 1)}
    return first_launch, reports


# ---- 1. gradients ----------------------------------------------------------------------------------


def single_process_reference(case: str, exp_dir: Path, extra):
    """(initial weight digest, [replay of rank 0's half, of rank 1's half]) in this process.

    A no-grad forward on the whole batch comes first: models that fit data statistics at their first
    training step (the voxel LDM's latent normalisation) fit them over all ranks' items under DDP (an
    all-reduce), i.e. on the concatenated batch, and so must the reference.
    """
    experiment = ddp_worker.build_case(case, str(exp_dir), extra)
    model = experiment.model_factory.model
    initial = ddp_worker.digest(model.state_dict())
    whole, *halves = ddp_worker.first_batch_parts(experiment)
    with torch.no_grad():
        ddp_worker.seeded_forward(model, whole, 0, contextlib.nullcontext)
    return initial, [ddp_worker.replay_rank(model, half, rank) for rank, half in enumerate(halves)]


@pytest.mark.parametrize("case", [*FAST_CASES, *(pytest.param(c, marks=pytest.mark.slow) for c in SLOW_CASES)])
def test_ddp_gradients_equal_the_mean_of_the_replayed_halves(case, request, tmp_path):
    out, extra = request.getfixturevalue("fast_grads" if case in FAST_CASES else "slow_grads")
    ranks = [torch.load(out / f"{case}_rank{r}.pt") for r in (0, 1)]
    initial, replays = single_process_reference(case, tmp_path / "exp", extra.get(case, []))
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["initial_weights"] == ranks[1]["initial_weights"] == initial  # same model everywhere
    for rank, replay in zip(ranks, replays):  # each rank's forward is the replay of its half
        torch.testing.assert_close(rank["objective"], replay["objective"], rtol=1e-6, atol=0)
    assert set(ranks[0]["grads"]) == set(ranks[1]["grads"]) == set(replays[0]["grads"]) | set(replays[1]["grads"])
    reference = {name: sum(r["grads"].get(name, torch.zeros_like(grad)) for r in replays) / 2
                 for name, grad in ranks[0]["grads"].items()}
    # float tolerance against the model's gradient scale: some gradients are rounding noise around an
    # exact zero (a convolution bias followed by BatchNorm) and differ by ~1e-7 between summation orders
    atol = 1e-6 * max(float(g.abs().max()) for g in reference.values())
    for name, grad in ranks[0]["grads"].items():
        assert torch.equal(grad, ranks[1]["grads"][name]), name  # the all-reduce leaves both ranks alike
        torch.testing.assert_close(grad, reference[name], rtol=1e-5, atol=atol,
                                   msg=lambda text: f"{case} {name}: {text}")
    # not vacuous: the halves (items and draws) give different gradients, and DDP averaged them
    assert any(not torch.allclose(replays[0]["grads"][n], replays[1]["grads"][n]) for n in replays[0]["grads"])
    assert any(not torch.allclose(g, replays[0]["grads"][n]) for n, g in ranks[0]["grads"].items())


# ---- 2 and 3. a real Experiment.run under torchrun ------------------------------------------------


def training_forwards(report):
    return [f for f in report["forwards"] if f["iteration"] is not None]  # validation has none


def writes_besides_probes(report):
    """The start-up write probes (``.write_test_<pid>``, made and removed by every rank) aside."""
    return [w for w in report["writes"] if not Path(w[1]).name.startswith(".write_test_")]


def test_initial_weights_agree_while_data_and_noise_differ_per_rank(runs):
    _, reports = runs
    zero, one = reports[("straight", 0)], reports[("straight", 1)]
    assert zero["built_weights"] == one["built_weights"]  # built alike (before DDP's broadcast)
    steps = list(zip(training_forwards(zero), training_forwards(one)))
    assert [(a["iteration"], b["iteration"]) for a, b in steps] == [(i, i) for i in range(4)]
    for a, b in steps:
        assert a["weights"] == b["weights"]  # DDP keeps the replicas identical step after step
        assert a["frames"] != b["frames"]  # each rank trains on its own shard of the batches
        assert a["rng"] != b["rng"]  # and draws its own noise (rays, timesteps)


def test_rank0_alone_writes_checkpoints_and_config(runs):
    base, reports = runs
    for run in ("straight", "split", "resumed"):
        targets = [w[1] for w in writes_besides_probes(reports[(run, 0)]) if w[0] == "os.rename"]
        epochs = {"straight": [1, 2], "split": [1], "resumed": [2]}[run]
        assert targets == ["expconfig.yaml", *(f"checkpoints/epoch_{e:05d}.pth" for e in epochs)]
        assert not [w for w in writes_besides_probes(reports[(run, 1)]) if "train.log" not in w[1]]
    for exp in ("straight", "split"):  # everything once, no rank's temporary or partial file left
        files = sorted(str(p.relative_to(base / exp)) for p in (base / exp).rglob("*") if p.is_file())
        assert files == ["checkpoints/epoch_00001.pth", "checkpoints/epoch_00002.pth", "expconfig.yaml",
                         "train.log"]


def test_rank1_writes_no_log(runs):
    _, reports = runs
    for run in ("straight", "split", "resumed"):
        assert writes_besides_probes(reports[(run, 1)]) == []
    # the resumed launch ran one experiment per process: its log lines come once, from rank 0
    assert (runs[0] / "split" / "train.log").read_text().count("resumed from") == 1


def test_resume_works_on_both_ranks_from_the_same_checkpoint(runs):
    base, reports = runs
    checkpoint = load_checkpoint_file(base / "split" / "checkpoints" / "epoch_00001.pth")
    saved = ddp_worker.digest(checkpoint["model"])
    for rank in (0, 1):
        resumed, straight = (training_forwards(reports[(run, rank)]) for run in ("resumed", "straight"))
        assert [f["iteration"] for f in resumed] == [2, 3]  # both ranks continue after epoch 1
        assert resumed[0]["weights"] == saved == straight[2]["weights"]  # from the same weights
    final = load_checkpoint_file(base / "split" / "checkpoints" / "epoch_00002.pth")
    assert (final["epoch"], final["iteration"]) == (2, 4)


def test_resumed_ranks_train_on_the_batches_of_the_uninterrupted_run(runs):
    _, reports = runs
    for rank in (0, 1):
        resumed, straight = (training_forwards(reports[(run, rank)]) for run in ("resumed", "straight"))
        assert [f["frames"] for f in resumed] == [f["frames"] for f in straight[2:]]


def test_resumed_ranks_draw_their_own_noise(runs):
    _, reports = runs
    zero, one = (training_forwards(reports[("resumed", rank)]) for rank in (0, 1))
    assert all(a["rng"] != b["rng"] for a, b in zip(zero, one))
    for rank, resumed in ((0, zero), (1, one)):  # exactly as if never interrupted
        straight = training_forwards(reports[("straight", rank)])
        assert [f["rng"] for f in resumed] == [f["rng"] for f in straight[2:]]


def test_lr_schedule_epochs_count_the_steps_each_rank_takes(runs):
    base, _ = runs
    state = load_checkpoint_file(base / "straight" / "checkpoints" / "epoch_00001.pth")
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.05 * 0.5)  # milestone: epoch 1
