"""Attention ResNets: the paper's parameter and FLOP anchors (the paper's Tables IX
and X), identity start from plain weights, placement, and the frozen feature extractor."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torchvision.models import resnet50 as torchvision_resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

from hoi.config import ConfigError, build_config, to_dict
from hoi.data.cache import CacheError
from hoi.engine.checkpoint import arch_mismatch
from hoi.inputs.dataset import check_inputs
from hoi.models.attention import GlobalContext, SpatiallyAwareContext
from hoi.models.backbones import (
    AttentionResNet,
    BackboneConfig,
    FrozenFeatureExtractor,
    attention_modules,
    backbone_config,
    create_backbone,
    upgrade_backbone_record,
    validate_backbone_config,
)
from hoi.models.complexity import measure
from hoi.models.extractor import rebuild_extractor
from hoi.models.weights import count_parameters
from hoi.pretrain.export import export_backbone
from hoi.provenance import RANDOM_WEIGHTS

# (arch, overrides, params in millions as printed in the paper)
PARAMETER_ANCHORS = [
    ("resnet50", [], 25.56),
    ("sac_resnet50", [], 25.65),
    ("sac_resnet50", ["attention.stages=[2]", "attention.blocks=all"], 25.57),
    ("sac_resnet50", ["attention.stages=[3]", "attention.blocks=all"], 25.63),
    ("sac_resnet50", ["attention.stages=[4]", "attention.blocks=all"], 25.98),
    ("sac_resnet50", ["attention.stages=[5]", "attention.blocks=all"], 26.39),
    ("gc_resnet50", [], 25.73),
    ("gc_resnet50", ["attention.stages=[2]", "attention.blocks=all"], 25.58),
    ("gc_resnet50", ["attention.stages=[3]", "attention.blocks=all"], 25.69),
    ("gc_resnet50", ["attention.stages=[4]", "attention.blocks=all"], 26.36),
    ("gc_resnet50", ["attention.stages=[5]", "attention.blocks=all"], 27.14),
    ("resnet101", [], 44.55),
    ("sac_resnet101", [], 44.64),
    ("gc_resnet101", [], 44.73),
    ("se_resnet50", [], 28.09),
    ("se_resnet101", [], 49.33),
]


@pytest.mark.parametrize("arch,overrides,millions", PARAMETER_ANCHORS)
def test_parameter_counts_match_the_paper(arch: str, overrides: list[str], millions: float) -> None:
    model = create_backbone(arch, overrides=overrides)
    assert abs(count_parameters(model) / 1e6 - millions) <= 0.005


@pytest.mark.parametrize(
    "arch,paper_gflops", [("resnet50", 4.122), ("sac_resnet50", 4.163), ("gc_resnet50", 4.124)]
)
def test_flops_within_one_percent_of_the_paper(arch: str, paper_gflops: float) -> None:
    c = measure(backbone_config(arch), (224, 224))
    assert abs(c.flops_paper_order / 1e9 / paper_gflops - 1) <= 0.01


def test_cheap_sac_order_saves_the_c_squared_n_term() -> None:
    c = measure(backbone_config("sac_resnet50"), (224, 224))
    base = measure(backbone_config("resnet50"), (224, 224))
    # written order: W_rho Y costs C*C*N per block = 64^2*56^2 + 128^2*28^2 + 256^2*14^2
    c2n = 64**2 * 56**2 + 128**2 * 28**2 + 256**2 * 14**2
    assert c.flops_paper_order - c.flops >= 0.9 * c2n
    assert (c.flops - base.flops) / base.flops < 0.002


def test_identity_start_reproduces_plain_resnet() -> None:
    plain = torchvision_resnet50()
    plain.eval()
    state = plain.state_dict()
    x = torch.randn(1, 3, 96, 96)
    expected = plain(x)
    for arch in ("sac_resnet50", "gc_resnet50"):
        model = create_backbone(arch)
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected
        assert missing and all(".attn_after_conv" in k for k in missing)
        model.eval()
        assert torch.equal(model(x), expected), arch


def test_placement_follows_the_config() -> None:
    sac = create_backbone("sac_resnet50")
    blocks = attention_modules(sac)
    assert len(blocks) == 3 and all(isinstance(b, SpatiallyAwareContext) for b in blocks)
    assert [b.channels for b in blocks] == [64, 128, 256]  # widths: after the 3x3 conv
    assert sac.layer1[-1].attn_after_conv2 is blocks[0] and sac.layer1[0].attn_after_conv2 is None
    gc = create_backbone("gc_resnet50")
    assert [b.channels for b in attention_modules(gc)] == [256, 512, 1024]  # block outputs
    assert all(isinstance(b, GlobalContext) for b in attention_modules(gc))
    moved = create_backbone("sac_resnet50", overrides=["attention.position=after_conv3"])
    assert [b.channels for b in attention_modules(moved)] == [256, 512, 1024]
    every = create_backbone(
        "gc_resnet50", overrides=["attention.stages=[3,5]", "attention.blocks=all"]
    )
    assert len(attention_modules(every)) == 4 + 3
    r16 = create_backbone("sac_resnet50", overrides=["attention.reduction=16"])
    assert [b.num_contexts for b in attention_modules(r16)] == [4, 8, 16]


def test_config_errors_name_what_is_valid() -> None:
    with pytest.raises(ConfigError, match="unknown arch 'sac_resnet51'.*sac_resnet50"):
        backbone_config("sac_resnet51")
    valid = "cbam, gc, none, sac, se"
    message = f"attention.type: unknown value 'nl'; valid names: {valid}$"
    with pytest.raises(ConfigError, match=message):
        backbone_config("resnet50", overrides=["attention.type=nl"])
    with pytest.raises(ConfigError, match="stages are numbered 2..5"):
        backbone_config("sac_resnet50", overrides=["attention.stages=[1,2]"])
    with pytest.raises(ConfigError, match="closest valid keys: attention.stages"):
        backbone_config("sac_resnet50", overrides=["attention.stage=[2]"])


def test_config_file_with_inheritance(tmp_path) -> None:
    (tmp_path / "base.yaml").write_text("depth: 101\nattention:\n  type: sac\n")
    (tmp_path / "child.yaml").write_text(
        "_base_: base.yaml\nattention:\n  stages: [4]\n  blocks: all\n"
    )
    cfg = backbone_config(config_file=tmp_path / "child.yaml", overrides=["attention.reduction=64"])
    assert (cfg.depth, cfg.attention.type, list(cfg.attention.stages)) == (101, "sac", [4])
    assert (cfg.attention.blocks, cfg.attention.reduction) == ("all", 64)


def test_wrong_image_batch_shape_is_named() -> None:
    model = create_backbone("resnet50")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got shape \(1, 1, 64, 64\)"):
        model(torch.randn(1, 1, 64, 64))


def _trained_like(model: AttentionResNet) -> AttentionResNet:
    """Give BatchNorm non-trivial statistics and attention non-zero weights."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for block in attention_modules(model):
            for p in block.parameters():
                p.normal_(0, 0.01)
    return model


def test_frozen_feature_extractor_layer3() -> None:
    resnet = _trained_like(create_backbone("sac_resnet50")).double()  # double: compare exactly
    resnet.eval()
    x = torch.randn(2, 3, 128, 96, dtype=torch.double)
    expected = resnet.forward_features(x, last_stage=4)
    extractor = FrozenFeatureExtractor(resnet, last_stage=4)
    assert (extractor.stride, extractor.out_channels) == (16, 1024)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in extractor.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in extractor.modules())
    assert all(not p.requires_grad for p in extractor.parameters())
    assert not hasattr(extractor.body, "fc") and len(extractor.body) == 4  # stem + stages 2-4
    out = extractor(x)
    assert out.shape == (2, 1024, 8, 6)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    extractor.train()
    assert not extractor.training
    again = extractor(x)
    assert torch.equal(out, again)  # .train() changes nothing, statistics do not move


@pytest.mark.parametrize(
    "name",
    ["resnet50", "sac_resnet50", "gc_resnet50", "resnet101", "sac_resnet101", "gc_resnet101"],
)
def test_backbone_config_files_equal_the_named_presets(name: str) -> None:
    from hoi.models.backbones import resolved_placement
    from tests.conftest import REPO

    from_file = backbone_config(config_file=REPO / "configs" / "backbones" / f"{name}.yaml")
    from_preset = backbone_config(name)
    for cfg in (from_file, from_preset):  # spell out the defaults the preset leaves implicit
        if cfg.attention.type != "none":
            cfg.attention.position, cfg.attention.reduction = resolved_placement(cfg.attention)
    assert to_dict(from_file) == to_dict(from_preset)


@pytest.mark.parametrize(
    "override,message",
    [
        ("attention.position=middle",
         (r"attention.position: unknown value 'middle'; "
          r"valid names: after_conv2, after_conv3, auto$")),
        ("attention.blocks=first",
         r"attention.blocks: unknown value 'first'; valid names: all, last$"),
        ("attention.options.order=fast",
         r"attention.options.order: unknown value 'fast'; valid names: cheap, paper"),
        ("attention.options.ordr=paper",
         (r"attention.options of attention.type='sac': unknown config key 'ordr'; "
          r"closest valid keys: order")),
    ],
)
def test_choices_are_checked_by_their_tables(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        backbone_config("sac_resnet50", overrides=[override])


def test_options_belong_to_the_chosen_block() -> None:
    cfg = backbone_config("sac_resnet50", overrides=["attention.options.order=paper"])
    assert dict(cfg.attention.options) == {"softmax_beta": False, "order": "paper"}  # completed
    assert [b.order for b in attention_modules(AttentionResNet(cfg))] == ["paper"] * 3
    assert dict(backbone_config("gc_resnet50").attention.options) == {}
    for arch in ("gc_resnet50", "resnet50"):  # SAC's options mean nothing to another block
        with pytest.raises(ConfigError, match=r"attention.options of .*unknown config key 'order'"):
            backbone_config(arch, overrides=["attention.options.order=paper"])


# ------------------------------------------------------- records written by older versions


def _old_layout(record: dict) -> dict:
    """``record`` as versions before ``attention.options`` wrote it: SAC's options at the top
    level of ``attention``, for every block type."""
    old = copy.deepcopy(record)
    att = old["attention"]
    att.update({"softmax_beta": False, "order": "cheap", **att.pop("options")})
    return old


@pytest.mark.parametrize(
    "arch", ["resnet50", "sac_resnet50", "gc_resnet50", "se_resnet50", "cbam_resnet50"]
)
def test_old_records_read_as_the_current_layout(arch: str) -> None:
    current = to_dict(backbone_config(arch))
    old = _old_layout(current)
    assert "softmax_beta" in old["attention"] and "options" not in old["attention"]
    with pytest.raises(ConfigError, match="unknown config key 'attention.softmax_beta'"):
        build_config(BackboneConfig, base=old)  # what reading it without the upgrade did
    upgraded = upgrade_backbone_record(old)
    cfg = build_config(BackboneConfig, base=upgraded)
    validate_backbone_config(cfg)
    assert to_dict(cfg) == current
    assert arch_mismatch(upgraded, current) == []
    assert upgrade_backbone_record(current) == current  # a current record is left as it is


def _check_features_of(recorded_backbone: dict, this_run: dict) -> None:
    """hoi.inputs.dataset.check_inputs on a one-image feature file that recorded that backbone."""
    anno = {"filenames": ["a.jpg"], "size": [[20, 10]]}
    detections = SimpleNamespace(path="detections.h5", index={"a.jpg": 0})
    features = SimpleNamespace(path="features.h5", index={"a.jpg": 0}, image_sizes=[[20, 10]],
                               shape=(1024, 4, 4), provenance={"backbone": recorded_backbone})
    check_inputs(anno, detections, features, [0], this_run, 1024)


def test_check_inputs_reads_old_records_and_still_refuses_real_differences() -> None:
    sac = to_dict(backbone_config("sac_resnet50"))
    gc = to_dict(backbone_config("gc_resnet50"))
    _check_features_of(_old_layout(sac), sac)
    _check_features_of(_old_layout(gc), gc)
    paper = _old_layout(sac)
    paper["attention"]["order"] = "paper"
    with pytest.raises(CacheError, match=r"attention.options.order: features 'paper', this run"):
        _check_features_of(paper, sac)
    soft_gc = _old_layout(gc)
    soft_gc["attention"]["softmax_beta"] = True  # meant nothing then, but not what this run is
    with pytest.raises(CacheError, match=r"attention.softmax_beta: features True"):
        _check_features_of(soft_gc, gc)
    with pytest.raises(CacheError, match=r"attention.type: features 'sac', this run 'gc'"):
        _check_features_of(_old_layout(sac), gc)


def test_extractor_rebuilt_from_an_old_provenance() -> None:
    current = to_dict(backbone_config("sac_resnet50", overrides=["attention.stages=[4]"]))
    recorded = {"backbone": _old_layout(current), "layer": "stage4", "input_size": [64, 64],
                "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
                "weights_sha256": RANDOM_WEIGHTS, "weights_seed": 3}
    extractor, provenance = rebuild_extractor(recorded, "old.pth")
    assert provenance["backbone"] == current
    assert len(attention_modules(extractor)) == 1


def test_export_reads_an_old_pretraining_checkpoint(tmp_path) -> None:
    overrides = ["num_classes=3", "attention.options.order=paper"]
    cfg = backbone_config("sac_resnet50", overrides=overrides)
    state = AttentionResNet(cfg).state_dict()
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"arch": _old_layout(to_dict(cfg)), "model": state, "epoch": 0}, ckpt)
    out, _ = export_backbone(ckpt, tmp_path / "backbone.pth")
    assert torch.load(out, weights_only=True)["config"] == to_dict(cfg)
