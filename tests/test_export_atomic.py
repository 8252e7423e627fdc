"""``hoi export-backbone`` writes the weights and their ``.sha256`` as one unit: a kill at any
step leaves the old pair or the new one, which the reader (``load_backbone_weights``, what
extraction uses) accepts; weights without their checksum, or with another one, are refused in one
line; weights with NaN or inf are never exported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hoi.cli import main as hoi_main
from hoi.engine.checkpoint import CheckpointError
from hoi.models.backbones import AttentionResNet, backbone_config, create_backbone
from hoi.models.weights import WeightsError, checksum_path, load_backbone_weights
from hoi.pretrain import export as export_mod
from hoi.pretrain.export import export_backbone
from hoi.provenance import file_sha256

from .test_bad_input import one_error

REPO = Path(__file__).resolve().parents[1]
ARCH = "resnet50"


def pretrain_checkpoint(path: Path, seed: int) -> Path:
    """A checkpoint of `hoi pretrain`'s layout (3 classes) with seeded weights."""
    torch.manual_seed(seed)
    cfg = backbone_config(ARCH, overrides=["num_classes=3"])
    from hoi.config import to_dict

    torch.save({"arch": to_dict(cfg), "model": AttentionResNet(cfg).state_dict(), "epoch": seed},
               path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    return pretrain_checkpoint(root / "old.pth", 1), pretrain_checkpoint(root / "new.pth", 2)


def verdict(out: Path) -> str | None:
    """The sha256 the reader accepts at ``out``, or None where nothing is there; raises
    WeightsError where it refuses."""
    if not out.exists():
        return None
    return load_backbone_weights(create_backbone(ARCH), out, ignore_classifier=True).sha256


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp." in p.name)


class Killed(BaseException):
    """What the monkeypatched step raises: the export stops there (no clean-up runs after a
    real kill, and none runs here past the writes' own handler)."""


@pytest.mark.parametrize("step", [0, 1])
@pytest.mark.parametrize("first_export", [False, True])
def test_a_kill_at_either_rename_leaves_a_whole_pair(checkpoints, tmp_path, monkeypatch, step,
                                                      first_export) -> None:
    old_ckpt, new_ckpt = checkpoints
    out = tmp_path / "weights" / "backbone.pth"
    old = None if first_export else export_backbone(old_ckpt, out)[1]
    assert verdict(out) == old
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        if len(calls) == step:
            raise Killed
        calls.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(export_mod.os, "replace", replace)
    with pytest.raises(Killed):
        export_backbone(new_ckpt, out)
    monkeypatch.setattr(export_mod.os, "replace", real_replace)
    assert temps(out.parent)  # what the kill left under temporary names
    if step == 0:  # before the commit: the old pair (or nothing)
        assert verdict(out) == old
    else:  # after it: the new weights, whose checksum the reader finds and moves into place
        new = file_sha256(out)
        assert new != old and verdict(out) == new
        assert checksum_path(out).read_text().split()[0] == new
    # the next export clears what the killed one left and writes its own pair
    _, digest = export_backbone(new_ckpt, out)
    assert verdict(out) == digest and temps(out.parent) == []


def test_a_kill_while_writing_leaves_the_old_pair(checkpoints, tmp_path, monkeypatch) -> None:
    old_ckpt, new_ckpt = checkpoints
    out = tmp_path / "backbone.pth"
    _, old = export_backbone(old_ckpt, out)
    for n in (0, 1):  # in the weights' temporary file, in the checksum's
        real = export_mod._durable_write
        count = []

        def durable_write(path, write, real=real, count=count, n=n):
            if len(count) == n:
                Path(path).write_bytes(b"half")
                raise Killed
            count.append(path)
            real(path, write)

        monkeypatch.setattr(export_mod, "_durable_write", durable_write)
        with pytest.raises(Killed):
            export_backbone(new_ckpt, out)
        monkeypatch.undo()
        assert verdict(out) == old


KILL_AT_SECOND_RENAME = """
import os, sys
from hoi.pretrain import export
real, calls = os.replace, []
def replace(src, dst):
    if calls:
        print("committed", flush=True)
        os.kill(os.getpid(), 9)
    calls.append(dst)
    real(src, dst)
export.os.replace = replace
export.export_backbone(sys.argv[1], sys.argv[2])
"""


def test_sigkill_between_the_renames_then_extraction_reads_the_new_pair(checkpoints,
                                                                         tmp_path) -> None:
    """A real SIGKILL after the weights' rename: the reader accepts the new weights with the
    checksum the export left, and the next export takes over its lock."""
    old_ckpt, new_ckpt = checkpoints
    out = tmp_path / "backbone.pth"
    _, old = export_backbone(old_ckpt, out)
    proc = subprocess.run([sys.executable, "-c", KILL_AT_SECOND_RENAME, str(new_ckpt), str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL and "committed" in proc.stdout, proc.stderr
    assert checksum_path(out).read_text().split()[0] == old  # the old checksum is still there
    assert Path(f"{out}.lock").exists()  # and the killed export's lock
    new = file_sha256(out)
    assert verdict(out) == new != old
    assert export_backbone(old_ckpt, out)[1] == old and temps(tmp_path) == []
    assert not Path(f"{out}.lock").exists()


def test_weights_without_or_with_another_checksum_are_refused(checkpoints, tmp_path,
                                                              capsys) -> None:
    """What the old export left after a kill (weights, no .sha256), and a damaged copy; through
    the extractor's loader (in one line) and data_prep.extract's command line."""
    out = tmp_path / "backbone.pth"
    export_backbone(checkpoints[0], out)
    sidecar = checksum_path(out)
    sidecar.unlink()
    with pytest.raises(WeightsError, match=rf"{out}: its checksum file {sidecar} is missing"):
        verdict(out)
    from data_prep.extract import main as extract_main

    from .photos import make_photo_split

    images, anno = make_photo_split(tmp_path / "photos", n=1, max_side=64)
    args = ["--images", str(images), "--anno", str(anno), "--backbone", ARCH, "--weights",
            str(out), "--input-size", "32", "32", "--workers", "0", "--device", "cpu",
            "--out", str(tmp_path / "features.h5")]
    assert extract_main(args) == 2
    one_error(capsys.readouterr().err, out, sidecar, "hoi export-backbone")
    sidecar.write_text(f"{'0' * 64}  {out.name}\n")
    with pytest.raises(WeightsError, match=r"sha256 \w{12} is not the 000000000000 recorded in"):
        verdict(out)
    # files not written by hoi export-backbone need no checksum
    plain = tmp_path / "plain.pth"
    torch.save(create_backbone(ARCH).state_dict(), plain)
    assert verdict(plain) == file_sha256(plain)


def test_non_finite_weights_are_not_exported(tmp_path, capsys) -> None:
    ckpt = pretrain_checkpoint(tmp_path / "diverged.pth", 3)
    saved = torch.load(ckpt, weights_only=True)
    saved["model"]["layer2.1.bn2.running_var"][3] = float("nan")
    saved["model"]["layer3.0.conv1.weight"][0, 0, 0, 0] = float("inf")
    torch.save(saved, ckpt)
    out = tmp_path / "backbone.pth"
    with pytest.raises(CheckpointError, match=r"tensor 'layer2.1.bn2.running_var' holds 1 NaN"):
        export_backbone(ckpt, out)
    assert hoi_main(["export-backbone", str(ckpt), str(out)]) == 2
    one_error(capsys.readouterr().err, ckpt, "layer2.1.bn2.running_var")
    assert list(tmp_path.iterdir()) == [ckpt]
