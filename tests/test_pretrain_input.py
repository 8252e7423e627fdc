"""The pretraining input (hoi/pretrain/augment.py, device_input.py): per-sample augmentation
draws, the CPU path unchanged, the device path equal to it on the same draws, pinned batches,
persistent workers, bad JPEGs on the device path, and a divergence stopping in one line."""

from __future__ import annotations

import io
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.data._utils.pin_memory import pin_memory as loader_pin_memory
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from hoi.pretrain.augment import (
    TrainAugment,
    crop_pil,
    crop_tensor,
    normalize,
    sample_crop,
)
from hoi.pretrain.device_input import DeviceFeeder, decode_on_device
from hoi.pretrain.imagefolder import (
    Batch,
    EpochTaggedSampler,
    ImageFolderDataset,
    ImageReadError,
    collate_skipping,
    eval_transform,
)

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
AUG = TrainAugment(32, (0.08, 1.0), (3 / 4, 4 / 3), 0.5, seed=0)
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def photo(name: str, size: int = 96) -> Image.Image:
    import skimage.data

    img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    img.thumbnail((size, size))
    return img


def jpeg_folder(root: Path, per_class: int = 4) -> Path:
    """root/{a,b}/*.jpg from real photos, flipped and shifted to differ."""
    for c, name in enumerate(("astronaut", "coffee")):
        (root / f"class{c}").mkdir(parents=True)
        base = photo(name)
        for i in range(per_class):
            img = base.transpose(Image.FLIP_LEFT_RIGHT) if i % 2 else base
            img.crop((i, 0, img.width, img.height)).save(root / f"class{c}" / f"{i}.jpg",
                                                          quality=90)
    return root


def test_crop_draws_stay_in_the_image_and_in_the_recipe_ranges():
    rng = random.Random(0)
    for _ in range(500):
        h, w = rng.randint(20, 400), rng.randint(20, 400)
        p = sample_crop(h, w, (0.08, 1.0), (3 / 4, 4 / 3), 0.5, rng)
        assert 0 <= p.top and p.top + p.height <= h and 0 <= p.left and p.left + p.width <= w
        assert p.height > 0 and p.width > 0
    # a 1000 x 10 strip fits no drawn crop: the fallback is the widest crop of ratio 4/3, centred
    p = sample_crop(10, 1000, (0.08, 1.0), (3 / 4, 4 / 3), 0.0, random.Random(0))
    assert (p.height, p.width, p.top, p.left, p.flip) == (10, 13, 0, 493, False)
    # the area fraction and aspect ratio of accepted draws follow the recipe
    draws = [sample_crop(300, 300, (0.08, 1.0), (3 / 4, 4 / 3), 0.5, rng) for _ in range(2000)]
    areas = np.array([d.height * d.width / 300 ** 2 for d in draws])
    ratios = np.array([d.width / d.height for d in draws])
    assert areas.min() >= 0.07 and areas.max() <= 1.0 and 0.45 < areas.mean() < 0.6
    assert ratios.min() >= 0.74 and ratios.max() <= 1.35
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55


def test_a_draw_depends_on_seed_epoch_and_index_only():
    assert AUG.params(300, 400, 3, 17) == AUG.params(300, 400, 3, 17)
    draws = {AUG.params(300, 400, e, i) for e in range(3) for i in range(20)}
    assert len(draws) == 60
    other_seed = TrainAugment(32, (0.08, 1.0), (3 / 4, 4 / 3), 0.5, seed=1)
    assert other_seed.params(300, 400, 3, 17) != AUG.params(300, 400, 3, 17)


def test_cpu_path_is_torchvisions_transform_bit_for_bit():
    """Crop in the worker, uint8 to the device, normalise there == the former PIL crop, ToTensor,
    Normalize, for training and evaluation."""
    img = photo("chelsea", 120)
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    for index in range(10):
        p = AUG.params(img.height, img.width, 0, index)
        old = TF.resized_crop(img, p.top, p.left, p.height, p.width, [32, 32], antialias=True)
        old = T.Normalize(MEAN, STD)(T.ToTensor()(TF.hflip(old) if p.flip else old))
        new = normalize(crop_pil(img, p, 32)[None], mean, std)[0]
        assert torch.equal(old, new)
    old_eval = T.Compose([T.Resize(40, antialias=True), T.CenterCrop(32), T.ToTensor(),
                          T.Normalize(MEAN, STD)])(img)
    assert torch.equal(old_eval, normalize(eval_transform(40, 32)(img)[None], mean, std)[0])


def test_device_path_equals_cpu_path_on_the_same_draws():
    """JPEG bytes decoded by torchvision (nvJPEG on CUDA; libjpeg here) and cropped as tensors
    give the pixels of the PIL path within one grey level (resampling rounding)."""
    from hoi.pretrain.device_input import decode_jpegs

    aug = TrainAugment(224, (0.08, 1.0), (3 / 4, 4 / 3), 0.5, seed=3)
    for name in ("astronaut", "coffee", "rocket"):
        buf = io.BytesIO()
        photo(name, 512).save(buf, format="JPEG", quality=90)
        pil = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        decoded = decode_jpegs([torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)],
                               CPU)[0]
        for index in range(8):
            p = aug.params(pil.height, pil.width, 0, index)
            diff = (crop_pil(pil, p, 224).float() - crop_tensor(decoded, p, 224)).abs()
            assert diff.max() <= 1.0 and diff.mean() < 0.25, (name, index, diff.max(), diff.mean())


def test_both_paths_through_the_loader_give_the_same_batches(tmp_path):
    """The same folder through 2 worker processes, decoded in the workers or by the feeder:
    the same images (within a grey level), targets and order; a PNG and a CMYK JPEG on the
    device path are decoded in the workers."""
    root = jpeg_folder(tmp_path / "train")
    photo("rocket").save(root / "class0" / "png_image.png")
    photo("coffee").convert("CMYK").save(root / "class1" / "cmyk.jpg", quality=90)
    outputs = {}
    for encoded in (False, True):
        data = ImageFolderDataset(root, augment=AUG, encoded=encoded)
        if encoded:
            kinds = [type(data[(0, i)]).__name__ for i in range(len(data))]
            assert kinds.count("EncodedImage") == 8 and kinds.count("tuple") == 2
        sampler = EpochTaggedSampler(DistributedSampler(data, 1, 0, shuffle=True, seed=0))
        loader = DataLoader(data, batch_size=5, sampler=sampler, num_workers=2,
                            collate_fn=collate_skipping, persistent_workers=True)
        feed = DeviceFeeder(CPU, MEAN, STD, 32, torch.contiguous_format, data)
        got = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            for batch in loader:
                images, targets, failed = feed(batch)
                assert failed == 0 and images.shape == (5, 3, 32, 32)
                order = batch.indices.argsort()  # decoded rows come first in a batch
                got.append((images[order], targets[order], batch.indices[order]))
        outputs[encoded] = got
    for (a, ta, ia), (b, tb, ib) in zip(outputs[False], outputs[True]):
        assert torch.equal(ia, ib) and torch.equal(ta, tb)
        grey = (a - b).abs() * torch.tensor(STD)[:, None, None] * 255
        assert grey.max() <= 1.0 + 1e-3
    assert not torch.equal(outputs[False][0][2], outputs[False][2][2])  # epochs reshuffle


def test_augmentation_does_not_depend_on_the_number_of_workers(tmp_path):
    root = jpeg_folder(tmp_path / "train", per_class=3)
    data = ImageFolderDataset(root, augment=AUG)
    batches = {}
    for workers in (0, 2):
        sampler = EpochTaggedSampler(DistributedSampler(data, 1, 0, shuffle=True, seed=0))
        sampler.set_epoch(4)
        loader = DataLoader(data, batch_size=3, sampler=sampler, num_workers=workers,
                            collate_fn=collate_skipping)
        batches[workers] = [b.images for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))


def test_batches_pin_when_the_loader_pins(monkeypatch):
    """DataLoader(pin_memory=True) calls ``pin_memory()`` on the batch: each tensor is pinned
    (recorded here; pinning itself needs a GPU)."""
    pinned = []

    def record(self, *args, **kwargs):
        pinned.append(tuple(self.shape))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", record)
    batch = collate_skipping([(torch.zeros(3, 8, 8, dtype=torch.uint8), 1, 4), None])
    out = loader_pin_memory(batch)
    assert isinstance(out, Batch) and out.skipped == 1
    assert sorted(pinned) == sorted([(1, 3, 8, 8), (1,), (1,)])


def test_a_corrupt_jpeg_on_the_device_path_is_named_or_skipped(tmp_path):
    root = jpeg_folder(tmp_path / "train", per_class=2)
    bad = root / "class1" / "1.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # the header survives, half the image data does not
    for policy, expect_error in (("stop", True), ("skip", False)):
        data = ImageFolderDataset(root, augment=AUG, encoded=True, on_bad_image=policy)
        batch = collate_skipping([data[(0, i)] for i in range(len(data))])
        assert len(batch.encoded) == 4  # the header reads: the worker cannot tell
        feed = DeviceFeeder(CPU, MEAN, STD, 32, torch.contiguous_format, data)
        if expect_error:
            with pytest.raises(ImageReadError, match=r"class1/1\.jpg: cannot read image"):
                feed(batch)
        else:
            images, targets, failed = feed(batch)
            assert failed == 1 and images.shape[0] == targets.shape[0] == 3
            assert targets.tolist() == [0, 0, 1]


def test_decode_auto_is_the_device_on_cuda_only():
    assert decode_on_device("auto", torch.device("cuda")) is True
    assert decode_on_device("auto", CPU) is False
    assert decode_on_device("device", CPU) is True and decode_on_device("cpu", CPU) is False


def run_pretrain(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hoi", "pretrain", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def common_overrides(root: Path, out: Path) -> list[str]:
    return [f"data.root={root}", f"output_dir={out}", "data.train_crop=32",
            "data.eval_resize=36", "data.eval_crop=32", "data.workers=1",
            "optim.batch_size=4", "optim.eval_batch_size=4", "optim.warmup_epochs=0",
            "log_every=1", "progress=false", "tensorboard=false"]


@pytest.mark.slow
def test_pretraining_with_device_decoding(tmp_path):
    """``data.decode=device`` trains through the CLI (JPEGs decoded by the feeder, on the CPU
    here) and resumes."""
    data = tmp_path / "imagenet"
    jpeg_folder(data / "train", per_class=4)
    jpeg_folder(data / "val", per_class=2)
    out = tmp_path / "run"
    args = ["--config", str(REPO / "configs/imagenet/resnet50.yaml"),
            *common_overrides(data, out), "optim.epochs=2", "optim.lr=0.01", "data.decode=device"]
    ok = run_pretrain([*args, "stop_after_epoch=1"])
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "decoded on cpu (JPEG bytes from the workers)" in (out / "log.txt").read_text()
    again = run_pretrain([*args, "--resume"])
    assert again.returncode == 0, again.stderr[-2000:]
    final = torch.load(out / "checkpoint.pth", weights_only=True)
    assert final["epoch"] == 1 and math.isfinite(final["metrics"]["train/loss"])


@pytest.mark.slow
@pytest.mark.parametrize("warmup, expected", [
    # lr 1e30 from the first step: the second step's loss is not finite
    ("0", r"error: non-finite loss at epoch 1, iteration 2/2: stopping \(lower optim.lr, "
          r"then start again; the weights of this epoch are not saved\)$"),
    # warm-up from lr 0: epoch 1 ends with finite (huge) weights and is saved; epoch 2 is not
    ("1", r"error: non-finite loss at epoch 2, iteration 1/2: stopping \(lower optim.lr, "
          r"then resume from \S+/run/checkpoint.pth; the weights of this epoch are not saved\)$"),
])
def test_a_divergence_stops_in_one_line_and_saves_nothing(tmp_path, warmup, expected):
    data = tmp_path / "imagenet"
    jpeg_folder(data / "train", per_class=4)
    jpeg_folder(data / "val", per_class=2)
    out = tmp_path / "run"
    bad = run_pretrain(["--config", str(REPO / "configs/imagenet/resnet50.yaml"),
                        *common_overrides(data, out), "optim.epochs=2", "optim.lr=1e30",
                        f"optim.warmup_epochs={warmup}"])
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert re.match(expected, lines[-1]), lines[-1]
    if warmup == "0":
        assert not (out / "checkpoint.pth").exists()
    else:
        assert torch.load(out / "checkpoint.pth", weights_only=True)["epoch"] == 0


def test_non_finite_weights_are_never_saved(tmp_path):
    from hoi.engine.loop import check_finite_weights
    from hoi.errors import NonFiniteError

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    check_finite_weights(model, 0, tmp_path / "checkpoint.pth")  # finite: nothing raised
    model[1].running_var[1] = float("inf")
    with pytest.raises(NonFiniteError, match=r"non-finite weights after epoch 3 \(1 tensors, "
                                             r"first 1.running_var\).*then start again"):
        check_finite_weights(model, 2, tmp_path / "checkpoint.pth")


def test_the_divergence_error_names_the_checkpoint_to_resume_from(tmp_path):
    from hoi.engine.finite import FiniteWatch
    from hoi.errors import NonFiniteError

    ckpt = tmp_path / "checkpoint.pth"
    ckpt.write_bytes(b"")
    watch = FiniteWatch(CPU, ckpt)
    watch.update_named({"loss": torch.tensor(float("nan"))}, 4)
    with pytest.raises(NonFiniteError, match=f"iteration 5/9: .*then resume from {ckpt};"):
        watch.check(2, 9)
