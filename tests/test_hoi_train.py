"""Training the VSGNet heads end to end on tiny caches: the loss falls and the train set is
overfit (hoi train -> hoi test -> mAP), runs are reproducible, resume is exact, a 2-process
gloo DDP run equals one process with the same total batch, and bad checkpoints are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hoi.cli import main as hoi_main
from hoi.data import load_annotations, pair_counts
from hoi.engine.distributed import DistInfo
from hoi.engine.logging import read_metrics
from hoi.evaluation import HOIResults, evaluate
from hoi.hoi_config import load_config
from hoi.training.train_heads import run_training

from .test_vsgnet_synth import make_split, run_overrides

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hico")
    make_split(root, "train2015", 12, seed=0)
    return root


def _train(root: Path, out: Path, **extra) -> dict[str, torch.Tensor]:
    run_training(load_config(None, run_overrides(root, out, **extra)), DistInfo(), None)
    return torch.load(out / "checkpoint.pth", weights_only=True)


def test_overfits_a_tiny_train_set(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--config", str(REPO / "configs/hico/base.yaml"),
            *run_overrides(data_root, out, **{"optim.epochs": 40, "log_every": 1000})]
    assert hoi_main(args) == 0
    losses = [r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.3 * np.mean(losses[:3])
    assert (out / "config.yaml").is_file() and (out / "best.pth").is_file()
    results = tmp_path / "results.npz"
    assert hoi_main(["test", "--checkpoint", str(out / "best.pth"), "--split", "train2015", "--out",
                     str(results)]) == 0
    anno = load_annotations(data_root / "instances_train2015.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = evaluate(anno, HOIResults.load(results), "default")["default"]
    present = pair_counts(anno) > 0
    # the official mean runs over all 600 classes; only the ones in these images can score
    assert res.ap[present].mean() > 0.9, res.ap[present]
    assert hoi_main(["eval", "--anno", str(data_root / "instances_train2015.json"),
                     "--detections", str(results), "--setting", "default"]) == 0


def test_same_seed_same_weights_and_exact_resume(data_root: Path, tmp_path: Path) -> None:
    a = _train(data_root, tmp_path / "a")
    b = _train(data_root, tmp_path / "b")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # interrupted after epoch 1, then resumed through the command line
    part = tmp_path / "c"
    run_training(load_config(None, run_overrides(data_root, part, stop_after_epoch=1)), DistInfo(),
                 None)
    assert torch.load(part / "checkpoint.pth", weights_only=True)["epoch"] == 0
    assert hoi_main(["train", "--config", str(REPO / "configs/hico/base.yaml"), "--resume",
                     *run_overrides(data_root, part)]) == 0
    c = torch.load(part / "checkpoint.pth", weights_only=True)
    assert c["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], c["model"][key]), key
    ma = read_metrics(tmp_path / "a" / "metrics.jsonl")
    mc = read_metrics(part / "metrics.jsonl")
    assert [r["step"] for r in ma] == [r["step"] for r in mc]
    assert [r.get("train/loss") for r in ma] == [r.get("train/loss") for r in mc]


def test_validation_split_is_seeded_and_saved(data_root: Path, tmp_path: Path) -> None:
    _train(data_root, tmp_path / "v", **{"data.val_fraction": 0.25, "optim.epochs": 1})
    import json

    split = json.loads((tmp_path / "v" / "val_split.json").read_text())
    assert len(split["val_filenames"]) == 3
    rec = read_metrics(tmp_path / "v" / "metrics.jsonl")[-1]
    assert "val/map_full" in rec and "val/map_present" in rec
    ckpt = torch.load(tmp_path / "v" / "best.pth", weights_only=True)
    assert ckpt["epoch"] == 0


def test_two_process_gloo_ddp_equals_one_process(data_root: Path, tmp_path: Path) -> None:
    single = _train(data_root, tmp_path / "single")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "hoi", "train", "--config", str(REPO / "configs/hico/base.yaml"),
           *run_overrides(data_root, out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ddp["world_size"] == 2 and len(ddp["rng"]) == 2
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, atol=2e-5, rtol=1e-4, msg=key)


def test_checkpoint_of_another_model_is_refused(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    _train(data_root, out, **{"optim.epochs": 1})
    ckpt = torch.load(out / "best.pth", weights_only=True)
    ckpt["arch"]["heads"]["head_channels"] = 64
    ckpt["config"]["model"]["head_channels"] = 64
    torch.save(ckpt, tmp_path / "other.pth")
    from hoi.engine.checkpoint import CheckpointError, load_checkpoint
    from hoi.hoi_config import config_of_checkpoint
    from hoi.inference.test_split import run_test

    other = load_checkpoint(tmp_path / "other.pth")
    cfg = config_of_checkpoint(other, tmp_path / "other.pth", ["device=cpu"])
    with pytest.raises(CheckpointError, match=r"mismatched shapes: .*graph_head"):
        run_test(cfg, other, tmp_path / "other.pth", tmp_path / "x.npz", DistInfo(),
                 split="train2015")
    # resuming a run of another architecture is refused before training, with the keys
    with pytest.raises(CheckpointError, match=r"heads.head_channels: checkpoint 32, this run 16"):
        run_training(load_config(None, run_overrides(data_root, out,
                                                     **{"model.head_channels": 16})),
                     DistInfo(), out / "checkpoint.pth")


def test_worker_processes_give_the_same_run(data_root: Path, tmp_path: Path) -> None:
    # DataLoader workers each open the HDF5 file themselves; the run must not change
    a = _train(data_root, tmp_path / "w0", **{"optim.epochs": 1})
    b = _train(data_root, tmp_path / "w2", **{"optim.epochs": 1, "data.workers": 2})
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_zero_epochs_saves_the_untrained_model(data_root: Path, tmp_path: Path) -> None:
    """optim.epochs=0 writes the model at its seeded initial weights (the demo's baseline)."""
    untrained = tmp_path / "untrained"
    run_training(load_config(None, run_overrides(data_root, untrained, **{"optim.epochs": 0})),
                 DistInfo(), None)
    best = torch.load(untrained / "best.pth", weights_only=True)
    assert best["epoch"] == -1 and not (untrained / "metrics.jsonl").exists()
    trained = _train(data_root, tmp_path / "trained", **{"optim.epochs": 1})
    again = tmp_path / "again"
    run_training(load_config(None, run_overrides(data_root, again, **{"optim.epochs": 0})),
                 DistInfo(), None)
    same = torch.load(again / "best.pth", weights_only=True)
    changed = [k for k, v in best["model"].items() if not torch.equal(v, trained["model"][k])]
    assert changed  # training moves the weights away from the saved initial ones
    assert all(torch.equal(v, same["model"][k]) for k, v in best["model"].items())  # seeded


def test_non_finite_values_are_flagged_on_the_device_and_reported_with_their_first_step() -> None:
    from hoi.engine.finite import FiniteWatch

    watch = FiniteWatch(torch.device("cpu"))
    ok = {"visual": torch.zeros(2, 3), "graph": torch.zeros(2, 3)}
    watch.update(ok, torch.tensor(1.0), 0)
    watch.check(0, 10)  # nothing flagged: no error
    watch.update(dict(ok, graph=torch.tensor([[0.0, float("nan"), 0.0]])), torch.tensor(1.0), 2)
    watch.update(ok, torch.tensor(float("inf")), 3)
    with pytest.raises(FloatingPointError, match=r"non-finite graph logits, loss at epoch 2, "
                                                 r"iteration 3/10"):
        watch.check(1, 10)
