"""One run per output (``hoi/engine/run_lock.py``): a second run into a folder (or file) that a
live run holds is refused in one line naming it and the holder's pid, through the real CLI and
under torchrun; a lock left by a SIGKILLed run is taken over with a warning (also when the killed
run's forked children live on); temporary files of live writers are never deleted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hoi.engine import run_lock
from hoi.engine.checkpoint import atomic_save, remove_stale_temps
from hoi.engine.run_lock import (
    LOCK_NAME,
    RunLockError,
    acquire_run_lock,
    hold_run_lock,
    lock_path,
    tag_is_stale,
    temp_tag,
)

from .test_bad_input import one_error, run_cli

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}

# holds the lock of argv[1] (folder or file per argv[2]) until killed; with argv[3] == "fork",
# first forks a child that outlives it (as a DataLoader worker of a killed run can)
HOLDER = """
import os, sys, time
from hoi.engine.run_lock import acquire_run_lock
lock = acquire_run_lock(sys.argv[1], "lock holder of the test", folder=sys.argv[2] == "folder")
child = 0
if sys.argv[3] == "fork":
    child = os.fork()
    if child == 0:
        time.sleep(120)
        os._exit(0)
print("held", os.getpid(), child, flush=True)
time.sleep(120)
"""


class Holder:
    """A separate process holding the lock of ``target``."""

    def __init__(self, target: Path, folder: bool = True, fork: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(target), "folder" if folder else "file",
             "fork" if fork else "-"], stdout=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "held", line
        self.pid, self.child = int(line[1]), int(line[2])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc.stdout.close()

    def kill_child(self) -> None:
        if self.child:
            try:
                os.kill(self.child, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def holders():
    made: list[Holder] = []
    yield made
    for h in made:
        h.kill()
        h.kill_child()


# ---------------------------------------------------------------------------- in one process
def test_lock_file_says_who_holds_it_and_goes_at_release(tmp_path) -> None:
    out = tmp_path / "run"
    with hold_run_lock(out, "hoi train") as lock:
        record = json.loads((out / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["command"] == "hoi train"
        assert lock.path == out / LOCK_NAME and lock.takeover is None
        again = acquire_run_lock(out)  # reentrant within a process
        again.release()
        assert (out / LOCK_NAME).exists()
    assert not (out / LOCK_NAME).exists()
    target = tmp_path / "cache" / "features.h5"
    with hold_run_lock(target, folder=False):
        assert lock_path(target, folder=False).is_file()
        assert lock_path(target, folder=False).name == "features.h5.lock"
    assert not lock_path(target, folder=False).exists()


def test_lock_is_released_on_an_exception(tmp_path) -> None:
    with pytest.raises(ValueError), hold_run_lock(tmp_path / "run"):
        raise ValueError("boom")
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_temp_tags() -> None:
    assert tag_is_stale(temp_tag())  # this process's own
    assert tag_is_stale("abc123")  # no tag: an older version's name
    assert not tag_is_stale(f"{run_lock.host_name()}-1")  # init runs
    assert not tag_is_stale("some-other-machine-12345")  # cannot tell: kept
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert tag_is_stale(f"{run_lock.host_name()}-{dead.pid}")


def test_checkpoint_save_keeps_a_live_writers_temp(tmp_path) -> None:
    path = tmp_path / "checkpoint.pth"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        host = run_lock.host_name()
        live_tmp = tmp_path / f".checkpoint.pth.{host}-{alive.pid}.tmp"
        dead_tmp = tmp_path / f".checkpoint.pth.{host}-{dead.pid}.tmp"
        legacy = tmp_path / ".checkpoint.pth.abc123.tmp"
        for p in (live_tmp, dead_tmp, legacy):
            p.write_bytes(b"half a checkpoint")
        atomic_save({"epoch": 1}, path)
        assert torch.load(path, weights_only=True) == {"epoch": 1}
        assert live_tmp.exists() and not dead_tmp.exists() and not legacy.exists()
        assert remove_stale_temps(path) == []
    finally:
        alive.kill()
        alive.wait()


def test_feature_file_temp_of_a_live_writer_is_kept(tmp_path) -> None:
    from hoi.data.cache import FeatureWriter

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "features.h5"
        live_tmp = tmp_path / f"features.h5.tmp.{run_lock.host_name()}-{alive.pid}"
        live_tmp.write_bytes(b"being made by another process")
        legacy = tmp_path / "features.h5.tmp"
        legacy.write_bytes(b"left by an older version")
        FeatureWriter(out, ["a.jpg"], [[4, 4]], (2, 1, 1), {"x": 1}).close()
        assert out.is_file() and live_tmp.exists() and not legacy.exists()
        assert not list(tmp_path.glob(f"features.h5.tmp.*-{os.getpid()}"))
    finally:
        alive.kill()
        alive.wait()


# ---------------------------------------------------------------------------- two processes
def test_second_run_into_a_held_folder_is_refused_by_every_command(tmp_path, holders) -> None:
    """The real CLI, while another process holds the folder: one line naming it and the pid."""
    out = tmp_path / "run"
    holder = Holder(out)
    holders.append(holder)
    lines = {}
    for name, args in {
        "train": ["-m", "hoi", "train", "--config", str(REPO / "configs/hico/base.yaml"),
                  f"output_dir={out}", "device=cpu", f"data.root={tmp_path / 'nowhere'}"],
        "pretrain": ["-m", "hoi", "pretrain", "--config",
                     str(REPO / "configs/imagenet/sac_resnet50.yaml"), f"output_dir={out}",
                     "device=cpu", f"data.root={tmp_path / 'nowhere'}"],
    }.items():
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        lines[name] = one_error(proc.stderr, out, f"pid {holder.pid}")
        assert "another run writes into this folder" in lines[name]
    assert holder.proc.poll() is None  # the holder goes on
    assert not (out / "log.txt").exists() and not (out / "metrics.jsonl").exists()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid


def test_second_run_into_a_held_file_is_refused(tmp_path, holders) -> None:
    results = tmp_path / "results.npz"
    holder = Holder(results, folder=False)
    holders.append(holder)
    with pytest.raises(RunLockError, match=rf"{results}: another run writes this file \(lock "
                                           rf"holder of the test, pid {holder.pid} on this "
                                           r"machine"):
        acquire_run_lock(results, folder=False)
    assert not results.exists()  # (hoi test --out through the CLI: tests/test_predict.py)


def test_lock_of_a_sigkilled_run_is_taken_over_with_a_warning(tmp_path, holders, capsys) -> None:
    out = tmp_path / "run"
    holder = Holder(out, fork=True)  # its forked child outlives it, as DataLoader workers can
    holders.append(holder)
    with pytest.raises(RunLockError, match=f"pid {holder.pid}"):
        acquire_run_lock(out)
    holder.kill()
    assert (out / LOCK_NAME).exists()  # what a SIGKILL leaves
    with hold_run_lock(out, "hoi train") as lock:
        assert f"pid {holder.pid}" in lock.takeover and "no longer runs" in lock.takeover
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert f"warning: {out}: took over the lock" in err and f"pid {holder.pid}" in err
    holder.kill_child()


def test_torchrun_ranks_all_stop_on_a_held_folder(tmp_path, holders) -> None:
    """scripts/pretrain_imagenet.sh with two processes: rank 0 is refused the lock, every rank
    stops (rank 1 with rank 0's line: no rank waits at a barrier), the line printed once."""
    out = tmp_path / "run"
    holder = Holder(out)
    holders.append(holder)
    env = {**ENV, "HOI_VENV": sys.prefix}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "pretrain_imagenet.sh"), "2",
                           str(REPO / "configs/imagenet/sac_resnet50.yaml"), f"output_dir={out}",
                           "device=cpu", f"data.root={tmp_path / 'nowhere'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = one_error(proc.stderr, out, f"pid {holder.pid}")
    # every rank fails with rank 0's verdict; torchrun reports the ranks that ended first (rank 1
    # alone when it raised before rank 0, which torchrun then stopped)
    assert line.endswith(("(rank 0)", "(rank 1)", "(ranks 0, 1)")), line


@pytest.mark.parametrize("stage", ["extract", "detect"])
def test_data_prep_stages_refuse_a_held_output_file(tmp_path, holders, stage) -> None:
    """``data_prep.extract`` and ``data_prep.detect`` hold ``<out>.lock`` for the whole stage:
    a second run writing the same file stops before reading anything."""
    from .photos import make_photo_split

    images, anno = make_photo_split(tmp_path / "split", n=2, max_side=64)
    out = tmp_path / f"{stage}.h5"
    holder = Holder(out, folder=False)
    holders.append(holder)
    args = (["--backbone", "resnet50", "--weights", "none", "--device", "cpu"]
            if stage == "extract" else ["--source", "gt"])
    proc = run_cli("-m", f"data_prep.{stage}", "--images", str(images), "--anno", str(anno),
                   "--out", str(out), *args)
    line = one_error(proc.stderr)
    assert proc.returncode == 2
    assert f"{out}: another run writes this file (lock holder of the test, pid {holder.pid}" in line
    assert not out.exists()
