"""Loading weights: torchvision layouts, our checkpoints, clear errors on mismatch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50 as torchvision_resnet50

from hoi.models import weights as weights_mod
from hoi.models.backbones import create_backbone
from hoi.models.weights import WeightsError, load_backbone_weights
from hoi.provenance import file_sha256


@pytest.fixture(scope="module")
def plain_resnet50_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    state = torchvision_resnet50().state_dict()
    path = tmp_path_factory.mktemp("w") / "resnet50-plain.pth"
    torch.save(state, path)
    return path, state


def test_plain_weights_into_sac_resnet(plain_resnet50_file) -> None:
    path, state = plain_resnet50_file
    model = create_backbone("sac_resnet50")
    report = load_backbone_weights(model, path)
    assert report.missing == [] and report.unexpected == []
    assert len(report.missing_attention) == 3 * 6  # phi, theta, rho weight+bias in 3 blocks
    assert report.sha256 == file_sha256(path)
    torch.testing.assert_close(model.conv1.weight, state["conv1.weight"])
    reference = torchvision_resnet50()
    reference.load_state_dict(state)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model.eval()(x), reference.eval()(x))


def test_checkpoint_layouts_and_ddp_prefix(tmp_path, plain_resnet50_file) -> None:
    _, state = plain_resnet50_file
    for wrapper in ("model", "backbone", "state_dict"):
        path = tmp_path / f"{wrapper}.pth"
        torch.save({wrapper: {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
        model = create_backbone("resnet50")
        load_backbone_weights(model, path)
        torch.testing.assert_close(model.fc.bias, state["fc.bias"])


def test_attention_weights_round_trip(tmp_path) -> None:
    model = create_backbone("sac_resnet50")
    with torch.no_grad():
        model.layer3[-1].attn_after_conv2.rho.weight.normal_()
    path = tmp_path / "sac.pth"
    torch.save({"model": model.state_dict()}, path)
    other = create_backbone("sac_resnet50")
    report = load_backbone_weights(other, path)
    assert report.missing_attention == []
    assert torch.equal(other.layer3[-1].attn_after_conv2.rho.weight,
                       model.layer3[-1].attn_after_conv2.rho.weight)
    # A trained SAC checkpoint into a GC-ResNet: every SAC key is unexpected, GC keys missing.
    with pytest.raises(WeightsError, match=r"unexpected keys \(18\): layer1\.2\.attn_after_conv2"):
        load_backbone_weights(create_backbone("gc_resnet50"), path)


def test_mismatch_lists_missing_and_unexpected_keys(tmp_path) -> None:
    path = tmp_path / "r101.pth"
    torch.save(create_backbone("resnet101").state_dict(), path)
    model = create_backbone("resnet50")
    with pytest.raises(WeightsError) as err:
        load_backbone_weights(model, path)
    text = str(err.value)
    assert str(path) in text and "missing keys (0)" in text
    assert "unexpected keys (" in text and "layer3.6.conv1.weight" in text
    assert "strict=False" in text
    report = load_backbone_weights(model, path, strict=False)
    assert "layer3.22.bn3.running_var" in report.unexpected


def test_shape_mismatch_and_ignore_classifier(tmp_path) -> None:
    path = tmp_path / "ten_classes.pth"
    torch.save(create_backbone("resnet50", overrides=["num_classes=10"]).state_dict(), path)
    with pytest.raises(WeightsError,
                       match=r"fc.weight \(file \(10, 2048\), model \(1000, 2048\)\)"):
        load_backbone_weights(create_backbone("resnet50"), path)
    load_backbone_weights(create_backbone("resnet50"), path, ignore_classifier=True)


def test_unreadable_and_foreign_files_are_named(tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(WeightsError, match=f"{text}: not a readable PyTorch weights file"):
        load_backbone_weights(create_backbone("resnet50"), text)
    foreign = tmp_path / "foreign.pth"
    torch.save({"epoch": 1, "lr": [0.1]}, foreign)
    with pytest.raises(WeightsError, match=f"{foreign}: expected a state dict"):
        load_backbone_weights(create_backbone("resnet50"), foreign)
    with pytest.raises(WeightsError, match="weights file not found: .*missing.pth"):
        load_backbone_weights(create_backbone("resnet50"), tmp_path / "missing.pth")


def test_download_failure_says_what_to_do(tmp_path, monkeypatch) -> None:
    """No network in tests: point the download at a closed local port to make it fail."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(weights_mod, "torchvision_url",
                        lambda depth: "http://127.0.0.1:9/resnet50-0676ba61.pth")
    with pytest.raises(WeightsError) as err:
        load_backbone_weights(create_backbone("sac_resnet50"), "torchvision")
    text = str(err.value)
    assert "could not download" in text and "resnet50-0676ba61.pth" in text
    assert "pass its path" in text and str(tmp_path) in text


def test_torchvision_url_is_the_imagenet_v1_file() -> None:
    assert weights_mod.torchvision_url(50).endswith("resnet50-0676ba61.pth")
    assert weights_mod.torchvision_url(101).endswith("resnet101-63fe2227.pth")
