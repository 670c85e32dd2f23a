"""Two-process data-parallel training on the CPU (gloo), as torchrun would run it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from galae.checkpoint import load_checkpoint
from galae.mock import MockConfig, run_mock
from galae.train import TrainConfig, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: TrainConfig) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    train(cfg)


def test_two_process_gloo_training(tmp_path: Path) -> None:
    data = tmp_path / "d.h5"
    run_mock(MockConfig(n=16, shape=(24, 24), chunk=16), out=data, progress=False)
    cfg = TrainConfig(
        data=str(data),
        val_fraction=0.25,
        widths=(8, 16),
        hidden=32,
        rank=2,
        batch_size=4,
        max_steps=2,
        warmup_steps=1,
        wake_weight=1.0,
        sleep_weight=1.0,
        sleep_prior_refit_every=1,  # rank 0 fits the simulation prior and broadcasts it
        sleep_prior_start_step=1,
        sleep_prior_epochs=1,
        fit_prior=False,
        out_dir=str(tmp_path / "run"),
        eval_every=2,
        ckpt_every=2,
        tensorboard=False,
        progress=False,
        device="cpu",
    )
    mp.spawn(_worker, args=(2, _free_port(), cfg), nprocs=2, join=True)
    state = load_checkpoint(tmp_path / "run" / "model.pt")
    assert state["step"] == 2
    # no DDP wrapper leaks into the saved weights
    assert not any(k.startswith("module.") for k in state["encoder_state"])
