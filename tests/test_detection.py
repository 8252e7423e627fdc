"""COCO detectors with attention backbones (hoi.detection): the paper's parameter counts
(Tables I and VII), every detector x backbone builds, the backbone's freezing and weights, the
``hoi info --detector`` output, and a CPU smoke training + COCO evaluation of Mask R-CNN + SAC."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hoi.cli import main
from hoi.detection.complexity import build_meta_model, count_detector_parameters
from hoi.detection.config import DETECTORS, all_combinations, detector_cfg
from hoi.detection.paper import COMPLEXITY, TABLE_I_RATIOS

TOLERANCE_M = 0.1  # the issue's: within 0.1M of the paper's (rounded) numbers


def _params_m(detector: str, arch: str, *backbone_overrides: str) -> float:
    cfg = detector_cfg(detector, arch,
                       opts=["MODEL.HOI_BACKBONE.OVERRIDES", list(backbone_overrides)])
    return count_detector_parameters(build_meta_model(cfg))[0] / 1e6


@pytest.mark.parametrize("arch", ["resnet50", "sac_resnet50", "gc_resnet50", "se_resnet50",
                                  "cbam_resnet50"])
def test_mask_rcnn_params_match_table_vii(arch: str) -> None:
    paper = COMPLEXITY[("mask_rcnn", arch, None)]
    assert abs(_params_m("mask_rcnn", arch) - paper.params_m) <= TOLERANCE_M


@pytest.mark.parametrize("ratio", TABLE_I_RATIOS)
def test_mask_rcnn_sac_params_match_table_i(ratio: int) -> None:
    paper = COMPLEXITY[("mask_rcnn", "sac_resnet50", ratio)]
    got = _params_m("mask_rcnn", "sac_resnet50", f"attention.reduction={ratio}")
    assert abs(got - paper.params_m) <= TOLERANCE_M


def test_every_detector_and_backbone_builds() -> None:
    combos = all_combinations()
    assert len(combos) == 50 and {d for d, _ in combos} == set(DETECTORS)
    counts = {}
    for detector, arch in combos:
        model = build_meta_model(detector_cfg(detector, arch))
        counts[(detector, arch)] = count_detector_parameters(model)[0]
    for detector in DETECTORS:  # a deeper backbone, an added block: more parameters
        assert counts[(detector, "resnet101")] > counts[(detector, "resnet50")]
        for block in ("sac", "gc", "se", "cbam"):
            assert counts[(detector, f"{block}_resnet50")] > counts[(detector, "resnet50")]


def test_backbone_frozen_parts_and_imagenet_weights(tmp_path) -> None:
    from hoi.detection.backbone import build_bottom_up
    from hoi.models.backbones import backbone_config, create_backbone
    from hoi.models.weights import read_state_dict

    plain = create_backbone(config=backbone_config("resnet50"))
    torch.save(plain.state_dict(), tmp_path / "resnet50.pth")
    cfg = detector_cfg("mask_rcnn", "gc_resnet50",
                       opts=["MODEL.HOI_BACKBONE.WEIGHTS", str(tmp_path / "resnet50.pth")])
    body = build_bottom_up(cfg)
    state = read_state_dict(tmp_path / "resnet50.pth")
    assert torch.equal(body.layer3[0].conv2.weight, state["layer3.0.conv2.weight"])
    assert torch.equal(body.layer3[0].bn2.running_var, state["layer3.0.bn2.running_var"])
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert not any(p.requires_grad for m in (body.conv1, body.layer1) for p in m.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    gc = body.layer3[0].attn_after_conv3
    assert isinstance(gc.transform[1], torch.nn.LayerNorm)  # GC's LayerNorm: trainable
    assert all(p.requires_grad for p in gc.parameters())
    shapes = body.output_shape()
    assert [(shapes[k].channels, shapes[k].stride) for k in ("res2", "res3", "res4", "res5")] \
        == [(256, 4), (512, 8), (1024, 16), (2048, 32)]
    out = body(torch.zeros(1, 3, 64, 96))
    assert out["res5"].shape == (1, 2048, 2, 3)


def test_info_detector_json_and_paper_numbers(capsys) -> None:
    rc = main(["info", "--detector", "mask_rcnn", "--arch", "sac_resnet50", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert abs(info["params"] / 1e6 - 45.7) <= TOLERANCE_M
    assert info["paper"] == {"table": "VII", "params": 45.7e6, "flops": 283.1e9}
    assert info["flops_paper_order"] > info["flops"] > 250e9  # 1280x800, multiply-adds
    rc = main(["info", "--detector", "mask_rcnn", "--arch", "sac_resnet50",
               "attention.reduction=8", "--json"])
    assert json.loads(capsys.readouterr().out)["paper"]["table"] == "I"
    rc = main(["info", "--detector", "retinanet", "--arch", "resnet50", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert rc == 0 and info["paper"] is None and set(info["flops_parts"]) == {"backbone+fpn",
                                                                             "head"}


def test_errors_are_one_line(capsys, tmp_path) -> None:
    assert main(["info", "--detector", "mask_rcn"]) == 2
    assert "--detector" in capsys.readouterr().err
    missing = str(tmp_path / "none.json")
    assert main(["train-detector", "--detector", "mask_rcnn", "--train-json", missing,
                 "--train-images", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "none.json" in err and "not found" in err


SMOKE_OPTS = [
    "MODEL.ROI_HEADS.NUM_CLASSES", "2", "MODEL.DEVICE", "cpu", "SEED", "1",
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "160",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "160",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.002", "SOLVER.MAX_ITER", "20",
    "SOLVER.CLIP_TOTAL_NORM", "5.0",  # random backbone weights: clip harder than 35
    "SOLVER.STEPS", "(16,)", "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "1000",
    "DATALOADER.NUM_WORKERS", "0", "INPUT.RANDOM_FLIP", "none",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "400",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "200", "MODEL.RPN.PRE_NMS_TOPK_TEST", "200",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "100", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]


@pytest.mark.slow
def test_smoke_mask_rcnn_sac_trains_and_evaluates(tmp_path) -> None:
    from hoi.detection.coco_synth import write_calibrated_resnet, write_synthetic_coco
    from hoi.detection.train import CocoSplit, register_split, setup_run, train

    data = tmp_path / "synth"
    instances = write_synthetic_coco(data)
    cfg = detector_cfg("mask_rcnn", "sac_resnet50", opts=SMOKE_OPTS)
    weights = write_calibrated_resnet(50, data / "images", tmp_path / "resnet50.pth",
                                      tuple(cfg.MODEL.PIXEL_MEAN), tuple(cfg.MODEL.PIXEL_STD))
    name = register_split(CocoSplit(f"synth_{tmp_path.name}", str(instances),
                                    str(data / "images")))
    cfg.MODEL.HOI_BACKBONE.WEIGHTS = str(weights)
    cfg.DATASETS.TRAIN = cfg.DATASETS.TEST = (name,)
    cfg.OUTPUT_DIR = str(tmp_path / "run")
    cfg.freeze()
    setup_run(cfg)
    trainer, results = train(cfg, resume=False)
    losses = [float(v) for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    for task in ("bbox", "segm"):
        assert math.isfinite(results[task]["AP"]) and math.isfinite(results[task]["AP50"])
    assert (tmp_path / "run" / "model_final.pth").is_file()
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))  # TensorBoard
