"""The feature stage: real HDF5 output, provenance, resume after SIGKILL, torchrun sharding,
and the lazy reader under a multi-process DataLoader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from data_prep.extract import main as extract_main
from hoi.data.cache import CacheError, FeatureFile
from hoi.models.backbones import create_backbone

from .photos import make_photo_split

INPUT = ["--input-size", "96", "96"]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("photos")
    images, anno = make_photo_split(root, n=6)
    weights = root / "sac_resnet50.pth"
    torch.manual_seed(0)
    model = create_backbone("sac_resnet50")
    with torch.no_grad():  # non-identity attention so that SAC matters in the features
        for block in (model.layer1[-1], model.layer2[-1], model.layer3[-1]):
            for p in block.attn_after_conv2.parameters():
                p.normal_(0, 0.02)
    torch.save({"backbone": model.state_dict()}, weights)
    return images, anno, weights


def _args(split, out: Path, *extra: str) -> list[str]:
    images, anno, weights = split
    return ["--images", str(images), "--anno", str(anno), "--backbone", "sac_resnet50",
            "--weights", str(weights), "--out", str(out), "--workers", "0", "--batch-size", "1",
            "--device", "cpu", *INPUT, *extra]


@pytest.fixture(scope="module")
def reference(split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "features.h5"
    assert extract_main(_args(split, out)) == 0
    return out


def test_features_file_contents_and_provenance(split, reference) -> None:
    ff = FeatureFile(reference)
    assert ff.shape == (1024, 6, 6) and len(ff) == 6 and ff.done.all()
    assert ff.provenance["backbone"]["attention"]["type"] == "sac"
    assert ff.provenance["input_size"] == [96, 96] and ff.provenance["layer"] == "stage4"
    assert len(ff.provenance["weights_sha256"]) == 64
    # the stored map is the frozen extractor's output on the normalised, resized image
    from data_prep.extract import build_extractor, parse_args
    from hoi.data.images import backbone_input, load_rgb

    extractor, _ = build_extractor(parse_args(_args(split, reference)))
    image = backbone_input(load_rgb(split[0] / ff.filenames[3]), (96, 96))
    expected = extractor(image[None])[0].numpy()
    np.testing.assert_allclose(ff.get(3), expected, rtol=2e-3, atol=2e-3)  # float16 storage
    assert not np.allclose(ff.get(0), ff.get(1))


def test_resume_after_sigkill_recomputes_nothing_finished(split, reference, tmp_path) -> None:
    out = tmp_path / "features.h5"
    # batches of one image everywhere, so that every run's maps are bit-identical
    cmd = [sys.executable, "-m", "data_prep.extract", *_args(split, out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    for line in proc.stdout:  # kill as soon as two images are durable
        if "done 2/" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    partial = FeatureFile(out, require_complete=False)  # readable after the kill
    done_before = int(partial.done.sum())
    assert 2 <= done_before < 6
    with pytest.raises(CacheError, match="rerun the extract stage"):
        FeatureFile(out)
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert (f"{done_before} of 6 images of this rank already done; "
            f"{6 - done_before} to go") in rerun.stdout
    assert f"done {6 - done_before}/{6 - done_before}" in rerun.stdout
    ref, got = FeatureFile(reference), FeatureFile(out)
    for i in range(6):
        np.testing.assert_array_equal(got.get(i), ref.get(i))


def test_rerun_with_another_backbone_is_refused(split, reference) -> None:
    args = _args(split, reference)
    args[args.index("sac_resnet50")] = "gc_resnet50"
    args[args.index("--weights") + 1] = "none"
    assert extract_main(args) == 2  # reported as a clear error, the file is left alone
    assert FeatureFile(reference).provenance["backbone"]["attention"]["type"] == "sac"


def test_missing_images_fail_before_any_work(split, tmp_path) -> None:
    images, anno, weights = split
    empty = tmp_path / "no_images"
    empty.mkdir()
    args = _args((empty, anno, weights), tmp_path / "f.h5")
    assert extract_main(args) == 2
    assert not (tmp_path / "f.h5").exists()


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(split, reference, tmp_path) -> None:
    out = tmp_path / "features.h5"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "data_prep.extract", *_args(split, out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "merged 2 parts" in proc.stdout
    assert not list(tmp_path.glob("features.h5.rank*"))
    ref, got = FeatureFile(reference), FeatureFile(out)
    assert got.provenance == ref.provenance
    for i in range(6):
        np.testing.assert_array_equal(got.get(i), ref.get(i))


class _MapNorms(Dataset):
    def __init__(self, ff: FeatureFile) -> None:
        self.ff = ff

    def __len__(self) -> int:
        return len(self.ff)

    def __getitem__(self, i: int) -> tuple[int, int, float]:
        return i, os.getpid(), float(np.linalg.norm(self.ff.get(i)))


def test_lazy_reader_in_two_worker_processes(reference) -> None:
    ff = FeatureFile(reference)
    ff.get(0)  # opened in the parent: workers must not inherit the handle
    loader = DataLoader(_MapNorms(ff), batch_size=1, num_workers=2)
    rows = [(int(i), int(pid), float(n)) for i, pid, n in loader]
    assert len({pid for _, pid, _ in rows} - {os.getpid()}) == 2
    for i, _, norm in rows:
        assert norm == pytest.approx(float(np.linalg.norm(ff.get(i))))
