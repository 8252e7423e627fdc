"""The reusable training pieces of ``hoi.engine``: atomic checkpoints with an architecture
check, RNG capture/restore, the metrics writer, the paper's lr schedule, and the distributed
helpers on two real Gloo processes."""

from __future__ import annotations

import os
import random
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hoi.engine import checkpoint as ckpt_mod
from hoi.engine.checkpoint import CheckpointError, atomic_save, load_checkpoint
from hoi.engine.distributed import (
    ShardedSampler,
    all_gather_objects,
    all_gather_variable,
    all_reduce_sum,
)
from hoi.engine.logging import MetricsWriter, read_metrics
from hoi.engine.seed import capture_rng_state, restore_rng_state, seed_everything
from hoi.pretrain.schedule import lr_factor, warmup_step_scheduler
from hoi.pretrain.train_backbone import topk_correct


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth"
    atomic_save({"epoch": 1}, path)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]  # no temp file left


def test_load_checkpoint_names_file_and_mismatch(tmp_path):
    path = tmp_path / "c.pth"
    atomic_save({"arch": {"depth": 50, "attention": {"type": "sac"}}, "model": {}}, path)
    assert load_checkpoint(path, expected_arch={"depth": 50,
                                                "attention": {"type": "sac"}})["model"] == {}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, expected_arch={"depth": 101, "attention": {"type": "sac"}})
    assert str(path) in str(err.value) and "depth: checkpoint 50, this run 101" in str(err.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"nope")
    with pytest.raises(CheckpointError, match=f"{junk}: not a readable checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pth")


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    seed_everything(3, rank=1)
    atomic_save({"rng": capture_rng_state()}, tmp_path / "rng.pth")
    expected = (random.random(), np.random.rand(), torch.rand(3), np.random.randn())
    seed_everything(99)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pth")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3), np.random.randn())
    assert got[0] == expected[0] and got[1] == expected[1] and got[3] == expected[3]
    assert torch.equal(got[2], expected[2])


def test_metrics_writer_drops_records_after_the_resume_step(tmp_path):
    with MetricsWriter(tmp_path, tensorboard=True) as w:
        for step in range(6):
            w.write(step, {"loss": 1.0 / (step + 1)}, epoch=step // 3 + 1)
    with MetricsWriter(tmp_path, purge_step=3, tensorboard=False) as w:
        w.write(3, {"loss": float("nan")}, epoch=2)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert records[-1]["loss"] == "nan" and records[0]["epoch"] == 1
    assert list((tmp_path / "tensorboard").iterdir())
    # a no-op off the main process
    MetricsWriter(tmp_path / "other", enabled=False).write(0, {"x": 1})
    assert not (tmp_path / "other").exists()


def test_lr_schedule_is_the_papers():
    def f(epoch):
        return 0.1 * lr_factor(epoch, warmup_epochs=5, warmup_start_factor=0.0, step_epochs=30,
                               gamma=0.1)

    assert f(0) == 0.0 and f(2.5) == pytest.approx(0.05) and f(5) == pytest.approx(0.1)
    assert f(29.9) == pytest.approx(0.1) and f(30) == pytest.approx(0.01)
    assert f(60) == pytest.approx(0.001) and f(99.9) == pytest.approx(0.0001)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = warmup_step_scheduler(opt, iters_per_epoch=4, warmup_epochs=1, warmup_start_factor=0.0,
                                  step_epochs=2, gamma=0.1)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0, 0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01])
    assert set(sched.state_dict()) >= {"last_epoch", "base_lrs"}


def test_topk_correct_caps_k_at_the_number_of_classes():
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    correct = topk_correct(logits, torch.tensor([2, 0]), (1, 2, 5))
    assert correct.tolist() == [[False, True, True], [True, True, True]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        shard = list(ShardedSampler(9, rank, world_size))
        rows = torch.tensor(shard, dtype=torch.long)[:, None].repeat(1, 2)  # (n_rank, 2)
        gathered = all_gather_variable(rows)
        total = all_reduce_sum(torch.tensor([len(shard)]))
        objects = all_gather_objects({"rank": rank})
        if rank == 0:
            torch.save({"gathered": gathered, "total": total, "objects": objects, "shard": shard},
                       out)
    finally:
        dist.destroy_process_group()


def test_sharded_evaluation_gather_on_two_gloo_processes(tmp_path):
    """9 samples on 2 processes: shards of 5 and 4 (no padding), gathered once each."""
    out = tmp_path / "gathered.pt"
    # fork: the children need nothing re-imported, which keeps this test at a few seconds
    mp.start_processes(_gather_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True,
                       start_method="fork")
    result = torch.load(out, weights_only=True)
    assert result["shard"] == [0, 2, 4, 6, 8]
    assert result["gathered"][:, 0].tolist() == [0, 2, 4, 6, 8, 1, 3, 5, 7]
    assert result["gathered"].shape == (9, 2) and result["total"].item() == 9
    assert result["objects"] == [{"rank": 0}, {"rank": 1}]
    assert list(ShardedSampler(9)) == list(range(9)) and len(ShardedSampler(9, 1, 2)) == 4
