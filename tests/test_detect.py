"""The detection stage with real Detectron2: batched Faster R-CNN on real photos, the COCO ->
HICO map, ground-truth and imported detections, resume after SIGKILL, torchrun sharding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.detect import gt_proposals_jittered
from data_prep.detect import main as detect_main
from hoi.data.cache import ProposalFile
from hoi.data.metadata import PERSON_OBJECT, hico_metadata
from hoi.detector import DetectorSettings, detectron2_cfg
from hoi.detectron2_compat import import_detectron2

from .photos import make_photo_split, read_json

CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"  # R50 is the faster of the zoo's for tests
SIZE = ["--min-size", "256", "--max-size", "320"]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path]:
    return make_photo_split(tmp_path_factory.mktemp("photos"), n=4)


@pytest.fixture(scope="module")
def anchor_weights(tmp_path_factory) -> Path:
    return make_anchor_weights(tmp_path_factory.mktemp("w") / "anchors_person.pth")


def make_anchor_weights(path: Path) -> Path:
    """Random Faster R-CNN weights whose proposals are the anchors themselves (zero RPN deltas)
    and whose box head calls every proposal a person: real boxes without trained weights."""
    import_detectron2()  # the compatibility fixes come before any detectron2 submodule
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    cfg = detectron2_cfg(DetectorSettings(config=CONFIG), torch.device("cpu"))
    model = build_model(cfg)
    with torch.no_grad():
        model.proposal_generator.rpn_head.anchor_deltas.weight.zero_()
        model.proposal_generator.rpn_head.anchor_deltas.bias.zero_()
        predictor = model.roi_heads.box_predictor
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.zero_()
        predictor.cls_score.bias[0] = 6.0  # COCO class 0 = person
    torch.save(model.state_dict(), path)
    return path


def _args(split, weights: Path, out: Path, *extra: str, batch: int = 1) -> list[str]:
    """Batches of one by default: every proposal of these weights has the same score, so the
    kept boxes depend on tie order, which batch padding can change; runs compared with the
    reference must batch alike."""
    images, anno = split
    return ["--images", str(images), "--anno", str(anno), "--out", str(out), "--config", CONFIG,
            "--weights", str(weights), "--device", "cpu", "--workers", "0", "--batch-size",
            str(batch), "--log-every", "0",
            *SIZE, *extra]


@pytest.fixture(scope="module")
def reference(split, anchor_weights, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("det") / "detections.h5"
    assert detect_main(_args(split, anchor_weights, out)) == 0
    return out


def test_faster_rcnn_detections_file(split, anchor_weights, reference) -> None:
    anno = read_json(split[1])
    det = ProposalFile(reference)
    assert det.filenames == anno["filenames"] and not Path(str(reference) + ".partial").exists()
    assert det.provenance["config"] == CONFIG and det.provenance["score_thresh"] == 0.05
    assert det.provenance["weights_sha256"] and len(det.provenance["weights_sha256"]) == 64
    for i, (w, h) in enumerate(anno["size"]):
        d = det[i]
        assert 1 <= len(d) <= 100
        assert (d.labels == PERSON_OBJECT).all()
        assert (d.scores > 0.05).all() and (d.scores <= 1).all()
        assert (d.boxes[:, 0] >= 1).all() and (d.boxes[:, 2] <= w).all()
        assert (d.boxes[:, 1] >= 1).all() and (d.boxes[:, 3] <= h).all()
        assert (d.boxes[:, 2] >= d.boxes[:, 0]).all() and (d.boxes[:, 3] >= d.boxes[:, 1]).all()
        assert len(np.unique(d.boxes, axis=0)) > 1  # anchors of several sizes and places


def test_batched_run_with_score_and_count_limits(split, anchor_weights, tmp_path) -> None:
    out = tmp_path / "few.h5"
    args = _args(split, anchor_weights, out, "--max-per-image", "3", "--score-thresh", "0.5",
                 batch=3)
    assert detect_main(args) == 0
    det = ProposalFile(out)
    assert all(1 <= len(det[i]) <= 3 for i in range(len(det)))
    assert det.provenance["max_per_image"] == 3


def test_download_failure_says_to_pass_a_local_file(split, tmp_path, capsys) -> None:
    url = "http://127.0.0.1:9/model_final_f10217.pkl"  # a closed local port: no network needed
    args = _args(split, Path(url), tmp_path / "d.h5")
    args[args.index("--weights") + 1] = url
    assert detect_main(args) == 2
    err = capsys.readouterr().err
    assert "could not download" in err and "--weights /path/to/model_final_f10217.pkl" in err
    assert not list(tmp_path.glob("d.h5*"))  # refused before any file was made


def test_coco_to_hico_map_agrees_with_detectron2_class_names(shared_dir) -> None:
    import_detectron2()
    from detectron2.data import MetadataCatalog

    coco_names = MetadataCatalog.get("coco_2017_val").thing_classes
    meta = hico_metadata()
    official = json.loads((shared_dir / "hicodet" / "coco80tohico80.json").read_text())
    for k, name in enumerate(coco_names):
        hico = meta.coco80_to_hico[k + 1]
        assert hico == official[str(k + 1)]
        assert meta.objects[hico] == name.replace(" ", "_") or (name, meta.objects[hico]) in {
            ("motorcycle", "motorcycle"), ("couch", "couch"), ("potted plant", "potted_plant"),
            ("tv", "tv"), ("hair drier", "hair_drier"), ("dining table", "dining_table"),
        }


def test_ground_truth_source(split, tmp_path) -> None:
    anno = read_json(split[1])
    anno["annotation"][0] = {  # two pairs sharing the human, one with a person as object
        "boxes_h": [[1, 1, 50, 80], [1, 1, 50, 80]],
        "boxes_o": [[60, 10, 90, 40], [40, 2, 70, 70]],
        "object": [41, PERSON_OBJECT], "verb": [36, 31],
        "hoi": [int(hico_metadata().pair_to_hoi[41, 36]),
                int(hico_metadata().pair_to_hoi[PERSON_OBJECT, 31])],
    }
    d = gt_proposals_jittered(anno, 0)
    assert d.labels.tolist() == [PERSON_OBJECT, 41, PERSON_OBJECT]
    assert d.boxes.tolist() == [[1, 1, 50, 80], [60, 10, 90, 40], [40, 2, 70, 70]]
    assert (d.scores == 1).all()
    j1, j2 = (gt_proposals_jittered(anno, 0, jitter=0.1, seed=3),
              gt_proposals_jittered(anno, 0, jitter=0.1, seed=3))
    assert np.array_equal(j1.boxes, j2.boxes) and not np.array_equal(j1.boxes, d.boxes)
    w, h = anno["size"][0]
    assert (j1.boxes[:, 2] <= w).all() and (j1.boxes[:, :2] >= 1).all()
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(anno))
    out = tmp_path / "gt.h5"
    assert detect_main(["--source", "gt", "--anno", str(path), "--out", str(out), "--jitter", "0.1",
                        "--seed", "3"]) == 0
    np.testing.assert_array_equal(ProposalFile(out)[0].boxes, j1.boxes)


def test_import_source(split, tmp_path, capsys) -> None:
    anno = read_json(split[1])
    folder = tmp_path / "imported"
    folder.mkdir()
    for name in anno["filenames"]:
        (folder / (Path(name).stem + ".json")).write_text(json.dumps(
            {"boxes": [[0, 0, 9, 19], [5, 5, 30, 30]], "scores": [0.9, 0.4], "labels": [1, 42]}
        ))
    out = tmp_path / "imp.h5"
    args = ["--source", "import", "--anno", str(split[1]), "--out", str(out), "--import-dir",
            str(folder),
            "--import-labels", "coco80", "--import-boxes", "0-based"]
    assert detect_main(args) == 0
    d = ProposalFile(out)[0]
    assert d.boxes.tolist() == [[1, 1, 10, 20], [6, 6, 31, 31]]
    meta = hico_metadata()
    assert d.labels.tolist() == [PERSON_OBJECT, int(meta.coco80_to_hico[42])]
    bad = folder / (Path(anno["filenames"][2]).stem + ".json")
    bad.write_text(json.dumps({"boxes": [[5, 5, 1, 1]], "scores": [0.3], "labels": [1]}))
    assert detect_main(args) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "detection 0" in err and "x1<=x2" in err


def test_resume_after_sigkill(split, anchor_weights, reference, tmp_path) -> None:
    out = tmp_path / "detections.h5"
    cmd = [sys.executable, "-m", "data_prep.detect", *_args(split, anchor_weights, out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    for line in proc.stdout:
        if "done 2/" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "2 of 4 images of this rank already done; 2 to go" in rerun.stdout
    ref, got = ProposalFile(reference), ProposalFile(out)
    for i in range(4):
        np.testing.assert_allclose(got[i].boxes, ref[i].boxes, atol=1e-3)
        np.testing.assert_allclose(got[i].scores, ref[i].scores, atol=1e-5)


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(split, anchor_weights, reference, tmp_path) -> None:
    out = tmp_path / "detections.h5"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "data_prep.detect", *_args(split, anchor_weights, out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "merged 2 parts" in proc.stdout and not list(tmp_path.glob("*.partial"))
    ref, got = ProposalFile(reference), ProposalFile(out)
    assert got.filenames == ref.filenames
    for i in range(4):
        np.testing.assert_allclose(got[i].boxes, ref[i].boxes, atol=1e-3)


def test_image_size_unlike_the_annotation_is_refused(split, anchor_weights, tmp_path,
                                                     capsys) -> None:
    images, anno_path = split
    anno = read_json(anno_path)
    w, h = anno["size"][1]
    anno["size"][1] = [w + 10, h]  # a resized copy of the image, or the wrong annotation file
    bad = tmp_path / "instances.json"
    anno["annotation"][1] = {k: [] for k in anno["annotation"][1]}
    anno["empty"] = sorted(set(anno["empty"]) | {1})
    bad.write_text(json.dumps(anno))
    out = tmp_path / "detections.h5"
    assert detect_main(_args((images, bad), anchor_weights, out)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(lines) == 1
    assert (f"{images / anno['filenames'][1]}: decoded size {w}x{h} (w x h), "
            f"but {bad} gives {w + 10}x{h}") in lines[0]
    assert not out.exists()
    import h5py

    with h5py.File(out.with_name(out.name + ".partial"), "r") as f:  # image 0 is kept for the rerun
        assert f["done"][()].tolist() == [1, 0, 0, 0]


def old_detect_batch(model, inputs) -> list:
    """The conversion of the code before issue 22, kept as the reference: every image's
    instances brought to the host on their own."""
    from hoi.data.cache import ImageProposals
    from hoi.detector import continuous_to_inclusive

    coco_to_hico = hico_metadata().coco80_to_hico
    out = []
    with torch.inference_mode():
        for inp, result in zip(inputs, model(list(inputs))):
            inst = result["instances"].to("cpu")
            labels = coco_to_hico[inst.pred_classes.numpy() + 1]
            boxes = continuous_to_inclusive(inst.pred_boxes.tensor.numpy(), inp["width"],
                                            inp["height"])
            out.append(ImageProposals(boxes, inst.scores.numpy(), labels))
    return out


def test_writer_thread_and_workers_give_the_old_per_image_detections(split, anchor_weights,
                                                                     tmp_path) -> None:
    """Batches of three (one copy to the host each), two loader workers and a writer thread
    behind a queue of one: the file holds exactly what the old per-image conversion gives for
    the same batches."""
    from hoi.data.images import load_rgb
    from hoi.detector import Detectron2Input, build_detector

    out = tmp_path / "detections.h5"
    assert detect_main(_args(split, anchor_weights, out, "--workers", "2", "--write-queue", "1",
                             batch=3)) == 0
    det = ProposalFile(out)
    settings = DetectorSettings(config=CONFIG, min_size=256, max_size=320)
    model, cfg = build_detector(settings, torch.device("cpu"), str(anchor_weights))
    to_input = Detectron2Input(cfg)
    inputs = [to_input(load_rgb(split[0] / name)) for name in det.filenames]
    want = old_detect_batch(model, inputs[:3]) + old_detect_batch(model, inputs[3:])
    for i, ref in enumerate(want):
        assert len(ref) > 1
        np.testing.assert_array_equal(det[i].boxes, ref.boxes)
        np.testing.assert_array_equal(det[i].scores, ref.scores)
        np.testing.assert_array_equal(det[i].labels, ref.labels)
