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
from hoi.data.images import IMAGENET_MEAN, IMAGENET_STD
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
            "--device", "cpu", "--log-every", "0", *INPUT, *extra]


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


# ------------------------------------------------------------ uint8 to the device (issue 22)
def old_backbone_input(image, size, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """The host-side input of the code before issue 22, kept here as the reference: PIL's
    bilinear resize of the 8-bit image, then float32 / 255, - mean, / std."""
    from PIL import Image

    h, w = size
    arr = np.asarray(image.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(arr).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (tensor - mean_t) / std_t


def test_uint8_input_normalised_later_is_the_old_input_bit_for_bit(split) -> None:
    from hoi.data.images import backbone_input, load_rgb, normalize_images, resized_uint8

    names = sorted(p.name for p in split[0].iterdir())
    for name in names:
        image = load_rgb(split[0] / name)
        for size in ((96, 96), (400, 400), (75, 131)):
            small = resized_uint8(image, size)
            assert small.dtype == torch.uint8 and small.shape == (3, *size)
            old = old_backbone_input(image, size)
            # the resize ran on the 8-bit image before as now: no rounding is added
            assert torch.equal(normalize_images(small[None])[0], old)
            assert torch.equal(backbone_input(image, size), old)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    assert torch.equal(normalize_images(resized_uint8(image, (96, 96)), mean, std),
                       old_backbone_input(image, (96, 96), mean, std))


def test_features_equal_the_old_path_within_float16_rounding(split, tmp_path,
                                                             monkeypatch) -> None:
    """The stage hands uint8 batches to the device and its stored maps are those of the old
    float32 host input (batches of two, the forward of each batch as the stage runs it)."""
    import data_prep.extract as extract_mod
    from hoi.data.images import load_rgb

    seen: list[torch.dtype] = []
    real = extract_mod.device_maps

    def spy(extractor, loader, *a, **k):
        def batches():
            for indices, images in loader:
                seen.append(images.dtype)
                yield indices, images
        yield from real(extractor, batches(), *a, **k)

    monkeypatch.setattr(extract_mod, "device_maps", spy)
    out = tmp_path / "features.h5"
    assert extract_main(_args(split, out, "--batch-size", "2")) == 0
    assert seen == [torch.uint8] * 3
    extractor, _ = extract_mod.build_extractor(extract_mod.parse_args(_args(split, out)))
    ff = FeatureFile(out)
    for first in (0, 2, 4):
        batch = torch.stack([old_backbone_input(load_rgb(split[0] / ff.filenames[i]), (96, 96))
                             for i in (first, first + 1)])
        with torch.inference_mode():
            old = extractor(batch).numpy().astype(np.float16).astype(np.float32)
        for k in range(2):
            new = ff.get(first + k)
            # both are float16 roundings of float32 maps: one float16 step apart at most, i.e.
            # 2**-10 relative for normal values and 2**-24 absolute below float16's smallest
            # normal 2**-14 (here they are equal, as the inputs are bit for bit the same)
            np.testing.assert_allclose(new, old[k], rtol=2**-10, atol=2**-24)
            assert np.abs(new).max() > 1e-3  # not vacuous


# ------------------------------------------------------------ crashes keep what was written
def _equal_files(got: Path, want: Path) -> None:
    a, b = FeatureFile(got), FeatureFile(want)
    assert a.done.all()
    for i in range(len(b)):
        np.testing.assert_array_equal(a.get(i, None), b.get(i, None))


def test_crash_of_the_writer_thread_keeps_written_images_and_resumes(split, reference, tmp_path,
                                                                     monkeypatch, capsys) -> None:
    from hoi.data.cache import FeatureWriter
    from hoi.errors import DiskFullError

    real_write, calls = FeatureWriter.write, []

    def write_twice(self, index, features) -> None:
        calls.append(index)
        if len(calls) > 2:
            raise DiskFullError(f"{self.path}: simulated failure of write {len(calls)}")
        real_write(self, index, features)

    monkeypatch.setattr(FeatureWriter, "write", write_twice)
    out = tmp_path / "features.h5"
    assert extract_main(_args(split, out)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "simulated failure of write 3" in err
    assert FeatureFile(out, require_complete=False).done.tolist() == [1, 1, 0, 0, 0, 0]
    monkeypatch.setattr(FeatureWriter, "write", real_write)
    assert extract_main(_args(split, out)) == 0
    assert "2 of 6 images of this rank already done; 4 to go" in capsys.readouterr().out
    _equal_files(out, reference)


def test_crash_of_the_loop_writes_the_batches_handed_over_and_resumes(split, reference, tmp_path,
                                                                      monkeypatch) -> None:
    import data_prep.extract as extract_mod

    real = extract_mod.device_maps

    def crash_after_three(*a, **k):
        for n, item in enumerate(real(*a, **k)):
            if n == 3:
                raise KeyboardInterrupt  # e.g. Ctrl-C while the fourth batch is computed
            yield item

    monkeypatch.setattr(extract_mod, "device_maps", crash_after_three)
    out = tmp_path / "features.h5"
    assert extract_main(_args(split, out, "--write-queue", "1")) == 130  # "interrupted"
    assert FeatureFile(out, require_complete=False).done.tolist() == [1, 1, 1, 0, 0, 0]
    monkeypatch.setattr(extract_mod, "device_maps", real)
    assert extract_main(_args(split, out)) == 0
    _equal_files(out, reference)


def test_a_map_with_nan_is_refused_in_one_line_and_earlier_batches_are_kept(split, tmp_path,
                                                                            monkeypatch,
                                                                            capsys) -> None:
    """Random weights in which one conv weight turns NaN after two batches (as a NaN in a
    weights file would, from the first image on): the third image is refused, by name."""
    import data_prep.extract as extract_mod

    from .test_bad_input import one_error

    real = extract_mod.device_maps

    def poison_after_two(extractor, *a, **k):
        for n, item in enumerate(real(extractor, *a, **k)):
            yield item
            if n == 1:
                extractor.body[0][0].weight.data[0, 0, 0, 0] = float("nan")  # the stem's conv

    monkeypatch.setattr(extract_mod, "device_maps", poison_after_two)
    args = _args(split, tmp_path / "features.h5")
    args[args.index("--weights") + 1] = "none"
    out = tmp_path / "features.h5"
    assert extract_main(args) == 2
    names = FeatureFile(out, require_complete=False).filenames
    line = one_error(capsys.readouterr().err, split[0] / names[2], "weights none")
    assert "backbone map holds NaN/inf" in line and "expected finite features" in line
    assert FeatureFile(out, require_complete=False).done.tolist() == [1, 1, 0, 0, 0, 0]
    monkeypatch.setattr(extract_mod, "device_maps", real)
    assert extract_main(args) == 0  # the same random weights, unpoisoned: the run resumes
    assert FeatureFile(out).done.all()
