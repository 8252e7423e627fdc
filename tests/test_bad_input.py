"""Nothing silently wrong: every join between the stages checks what it is given.

Each test makes one kind of bad input itself and asserts: a non-zero exit, exactly one
``error:`` line naming the file, no traceback, and that earlier work is intact. Classes:
files that do not belong together (provenance), bad content (annotations, results, images),
unreadable files, a full disk, and what a killed run leaves behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.convert import main as convert_main
from data_prep.detect import main as detect_main
from data_prep.extract import main as extract_main
from hoi.cli import main as hoi_main
from hoi.data import hico_metadata, save_annotations
from hoi.data.anno_mat import write_anno_bbox_mat
from hoi.data.cache import FeatureFile, FeatureWriter
from hoi.evaluation import HOIResults

from .photos import make_photo_split, read_json
from .test_vsgnet_synth import make_split, run_overrides

REPO = Path(__file__).resolve().parents[1]
EXTRACT = ["--backbone", "resnet50", "--weights", "none", "--input-size", "64", "64",
           "--batch-size", "2", "--device", "cpu"]


def one_error(stderr: str, *names: str | Path) -> str:
    """The single ``error:`` line of ``stderr``; asserts there is no traceback and that the
    line names every one of ``names``."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    # pytest -s -k ... lists every message (closing notes, README)
    print(f"\nERROR-LINE {lines[0]}")
    return lines[0]


def run_cli(*args: str, cwd: Path | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("HOI_DEBUG", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO,
                          timeout=timeout)


# ----------------------------------------------------------------- shared small data
@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    return make_photo_split(tmp_path_factory.mktemp("photos"), n=4, max_side=96)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny train and test split (caches with provenance) and an untrained checkpoint."""
    root = tmp_path_factory.mktemp("hico")
    make_split(root, "train2015", 6, seed=0)
    make_split(root, "test2015", 4, seed=1)
    out = root / "run"
    assert hoi_main(["train", "--config", str(REPO / "configs/hico/base.yaml"),
                     *run_overrides(root, out, **{"optim.epochs": 0})]) == 0
    return root, out / "best.pth"


# --------------------------------------------------------------- files that do not belong together
def test_detections_of_another_annotation_are_refused_by_hoi_test(run_dir, tmp_path,
                                                                  capsys) -> None:
    root, ckpt = run_dir
    other = tmp_path / "other"
    make_split(other, "test2015", 5, seed=7)  # another test annotation, its own detections
    dets = other / "cache" / "detections_test2015.h5"
    before = dets.read_bytes()
    code = hoi_main(["test", "--checkpoint", str(ckpt), "--out", str(tmp_path / "r.npz"),
                     "--detections", str(dets)])
    line = one_error(capsys.readouterr().err, dets, root / "instances_test2015.json")
    assert code == 2 and "annotation.sha256" in line and "--allow-mismatch" in line
    assert not (tmp_path / "r.npz").exists() and dets.read_bytes() == before


@pytest.mark.parametrize("field,value", [("input_size", [224, 224]), ("weights_sha256", "f" * 64)])
def test_test_features_unlike_the_training_features_are_refused(run_dir, tmp_path, capsys, field,
                                                                value) -> None:
    root, ckpt = run_dir
    feats = FeatureFile(root / "cache" / "sac_resnet50" / "features_test2015.h5")
    prov = {**feats.provenance, field: value}
    other = tmp_path / "features_test2015.h5"
    writer = FeatureWriter(other, feats.filenames, feats.image_sizes, feats.shape, prov)
    for i in range(len(feats)):
        writer.write(i, feats.get(i))
    writer.close()
    out = tmp_path / "r.npz"
    code = hoi_main(["test", "--checkpoint", str(ckpt), "--out", str(out), "--features",
                     str(other)])
    line = one_error(capsys.readouterr().err, other, ckpt)
    assert code == 2 and f"field '{field}'" in line and not out.exists()
    # a researcher who means it: the override goes through and is recorded in the results
    assert hoi_main(["test", "--checkpoint", str(ckpt), "--out", str(out), "--features", str(other),
                     "--allow-mismatch"]) == 0
    accepted = HOIResults.load(out).meta["accepted_mismatches"]
    assert len(accepted) == 1 and f"field '{field}'" in accepted[0]


def test_results_of_another_annotation_are_refused_by_hoi_eval(run_dir, tmp_path, capsys) -> None:
    root, ckpt = run_dir
    results = tmp_path / "r.npz"
    assert hoi_main(["test", "--checkpoint", str(ckpt), "--out", str(results)]) == 0
    assert HOIResults.load(results).meta["annotation"]["num_images"] == 4
    other = tmp_path / "other"
    make_split(other, "test2015", 4, seed=9)
    capsys.readouterr()
    code = hoi_main(["eval", "--anno", str(other / "instances_test2015.json"), "--detections",
                     str(results)])
    line = one_error(capsys.readouterr().err, results, other / "instances_test2015.json")
    assert code == 2 and "annotation.sha256" in line
    assert hoi_main(["eval", "--anno", str(root / "instances_test2015.json"), "--detections",
                     str(results)]) == 0


def test_training_on_caches_of_another_annotation_is_refused(run_dir, tmp_path, capsys) -> None:
    root, _ = run_dir
    data = tmp_path / "data"
    shutil.copytree(root / "cache", data / "cache")
    anno = read_json(root / "instances_train2015.json")
    # the same images, another rare split
    anno["rare"], anno["non_rare"] = anno["non_rare"], anno["rare"]
    save_annotations(anno, data / "instances_train2015.json")
    out = tmp_path / "run"
    code = hoi_main(["train", "--config", str(REPO / "configs/hico/base.yaml"),
                     *run_overrides(data, out, **{"optim.epochs": 1})])
    line = one_error(capsys.readouterr().err, data / "cache" / "detections_train2015.h5")
    assert code == 2 and "the same image list, other labels" in line
    assert not (out / "checkpoint.pth").exists()


def test_resume_on_other_features_is_refused(run_dir, tmp_path, capsys) -> None:
    root, _ = run_dir
    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("run"))
    out = tmp_path / "run"
    args = ["train", "--config", str(REPO / "configs/hico/base.yaml"),
            *run_overrides(data, out, **{"optim.epochs": 2})]
    assert hoi_main([*args, "stop_after_epoch=1"]) == 0
    saved = (out / "checkpoint.pth").read_bytes()
    feats_path = data / "cache" / "sac_resnet50" / "features_train2015.h5"
    feats = FeatureFile(feats_path)
    prov = {**feats.provenance, "normalization": {"mean": [0, 0, 0], "std": [1, 1, 1]}}
    maps = [feats.get(i) for i in range(len(feats))]
    feats_path.unlink()
    writer = FeatureWriter(feats_path, feats.filenames, feats.image_sizes, feats.shape, prov)
    for i, m in enumerate(maps):
        writer.write(i, m)
    writer.close()
    capsys.readouterr()
    assert hoi_main([*args, "--resume"]) == 2
    line = one_error(capsys.readouterr().err, out / "checkpoint.pth")
    assert "field 'normalization'" in line and (out / "checkpoint.pth").read_bytes() == saved


# ----------------------------------------------------------------- one line for every user error
def test_missing_checkpoint_existing_run_and_other_config(run_dir, tmp_path, capsys) -> None:
    root, ckpt = run_dir
    missing = tmp_path / "nope.pth"
    assert hoi_main(["test", "--checkpoint", str(missing), "--out", str(tmp_path / "r.npz")]) == 2
    one_error(capsys.readouterr().err, missing)
    out = tmp_path / "run"
    config = ["train", "--config", str(REPO / "configs/hico/base.yaml")]
    overrides = run_overrides(root, out, **{"optim.epochs": 1})
    assert hoi_main([*config, *overrides]) == 0
    before = (out / "checkpoint.pth").read_bytes()
    capsys.readouterr()
    assert hoi_main([*config, *overrides]) == 2  # the run directory holds a run already
    assert "--resume" in one_error(capsys.readouterr().err, out / "checkpoint.pth")
    assert hoi_main([*config, "--resume", *overrides,
                     "model.head_hidden=48"]) == 2  # heads of another size
    assert "heads.head_hidden" in one_error(capsys.readouterr().err, out / "checkpoint.pth")
    assert (out / "checkpoint.pth").read_bytes() == before


def test_missing_and_truncated_annotations_in_data_prep(photos, tmp_path, capsys) -> None:
    images, anno = photos
    missing = tmp_path / "missing.json"
    out = tmp_path / "d.h5"
    assert detect_main(["--source", "gt", "--anno", str(missing), "--out", str(out)]) == 2
    one_error(capsys.readouterr().err, missing)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(anno.read_text()[:500])
    assert extract_main(["--images", str(images), "--anno", str(truncated), "--out", str(out),
                         *EXTRACT]) == 2
    assert "not valid JSON" in one_error(capsys.readouterr().err, truncated)
    assert not out.exists()


@pytest.mark.parametrize("problem", ["inverted_box", "hoi_600", "object_contradicts"])
def test_bad_annotations_are_refused_wherever_they_enter(photos, tmp_path, capsys, problem) -> None:
    images, anno_path = photos
    anno = read_json(anno_path)
    pair = anno["annotation"][1]
    if problem == "inverted_box":
        pair["boxes_o"][0] = [50.0, 10.0, 20.0, 30.0]
        expect = "boxes_o [50.0, 10.0, 20.0, 30.0] is not x1 <= x2"
    elif problem == "hoi_600":
        pair["hoi"][0] = 600
        expect = "hoi id 600 out of range 0..599"
    else:
        pair["object"][0] = 3
        expect = "needs object"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(anno))
    where = f"image 1 ({anno['filenames'][1]}), pair 0"
    out = tmp_path / "out.h5"
    runs = {
        "detect": lambda: detect_main(["--source", "gt", "--anno", str(bad), "--out", str(out)]),
        "extract": lambda: extract_main(["--images", str(images), "--anno", str(bad), "--out",
                                         str(out), *EXTRACT]),
        "eval": lambda: hoi_main(["eval", "--anno", str(bad), "--detections",
                                  str(tmp_path / "x.npz")]),
        "convert": lambda: convert_main(["--mat", str(bad), "--out", str(tmp_path / "conv")]),
    }
    HOIResults.empty().save(tmp_path / "x.npz")
    for stage, run in runs.items():
        assert run() == 2, stage
        line = one_error(capsys.readouterr().err, bad)
        assert where in line and expect in line, (stage, line)
    assert not out.exists() and not (tmp_path / "conv" / "bad.json").exists()


def test_convert_refuses_a_broken_mat_before_writing(photos, tmp_path, capsys) -> None:
    _, anno_path = photos
    anno = read_json(anno_path)
    anno["annotation"][2]["boxes_h"][0] = [40.0, 5.0, 10.0, 60.0]  # x2 < x1 in the .mat
    write_anno_bbox_mat({"test": anno}, tmp_path / "anno_bbox.mat")
    out = tmp_path / "out"
    assert convert_main(["--mat", str(tmp_path / "anno_bbox.mat"), "--out", str(out)]) == 2
    line = one_error(capsys.readouterr().err, tmp_path / "anno_bbox.mat")
    assert "bbox_test" in line and anno["filenames"][2] in line and "is not x1 <= x2" in line
    assert not list(out.glob("*.json"))


def _results(anno: dict, **changes) -> HOIResults:
    meta = hico_metadata()
    rows = []
    for i, pair in enumerate(anno["annotation"]):
        for bh, bo, h in zip(pair["boxes_h"], pair["boxes_o"], pair["hoi"]):
            rows.append((i, bh, bo, h))
    det = HOIResults([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                     [int(meta.hoi_object[r[3]]) for r in rows], [r[3] for r in rows],
                     np.linspace(0.9, 0.5, len(rows)))
    for key, (row, value) in changes.items():
        getattr(det, key)[row] = value
    return det


@pytest.mark.parametrize("change,expect", [
    ({"score": (1, np.nan)}, "row 1: score [nan]; expected finite numbers"),
    ({"boxes_h": (2, [30, 10, 5, 40])}, "row 2: boxes_h [30.0, 10.0, 5.0, 40.0]; expected finite"),
    ({"image_index": (0, 99)}, "row 0: image_index [99]; expected 0..3"),
])
def test_eval_refuses_results_it_cannot_score(photos, tmp_path, capsys, change, expect) -> None:
    _, anno_path = photos
    path = tmp_path / "results.npz"
    _results(read_json(anno_path), **change).save(path)
    assert hoi_main(["eval", "--anno", str(anno_path), "--detections", str(path)]) == 2
    assert expect in one_error(capsys.readouterr().err, path)


def test_eval_warns_about_boxes_past_the_border(photos, tmp_path, capsys) -> None:
    _, anno_path = photos
    anno = read_json(anno_path)
    w, h = anno["size"][0]
    path = tmp_path / "results.npz"
    _results(anno, boxes_o=(0, [1, 1, w + 5, h])).save(path)
    assert hoi_main(["eval", "--anno", str(anno_path), "--detections", str(path), "--classes",
                     "annotated"]) == 0
    out = capsys.readouterr().out
    assert f"warning: {path}: 1 of 4 detections have a box reaching past its image" in out


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".json", ".mat"])
def test_unreadable_results_are_one_line(photos, tmp_path, capsys, suffix) -> None:
    _, anno_path = photos
    good = tmp_path / "good.npz"
    _results(read_json(anno_path)).save(good)
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(good.read_bytes()[:300] if suffix == ".npz" else b"\x89HDF\r\n garbage " * 10)
    assert hoi_main(["eval", "--anno", str(anno_path), "--detections", str(path)]) == 2
    one_error(capsys.readouterr().err, path)


def test_truncated_official_mat_results(photos, tmp_path, capsys) -> None:
    _, anno_path = photos
    det = _results(read_json(anno_path))
    folder = tmp_path / "mat"
    det.save(tmp_path / "r.npz")
    assert hoi_main(["eval", "--anno", str(anno_path), "--detections", str(tmp_path / "r.npz"),
                     "--export-matlab", str(folder)]) == 0
    victim = sorted(folder.glob("detections_*.mat"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    capsys.readouterr()
    assert hoi_main(["eval", "--anno", str(anno_path), "--detections", str(folder)]) == 2
    one_error(capsys.readouterr().err, victim)


def test_worker_failure_is_one_line_and_names_the_image(photos, tmp_path) -> None:
    """Image sizes are compared with the annotation in the loader's worker processes; the
    worker's error reaches the user as the same single line."""
    images, anno_path = photos
    anno = read_json(anno_path)
    anno["size"][2] = [anno["size"][2][1], anno["size"][2][0]]  # as if the image were rotated
    w, h = anno["size"][2]
    anno["annotation"][2] = {k: [] for k in anno["annotation"][2]}
    anno["empty"] = sorted(set(anno["empty"]) | {2})
    bad = tmp_path / "anno.json"
    bad.write_text(json.dumps(anno))
    out = tmp_path / "f.h5"
    proc = run_cli("-m", "data_prep.extract", "--images", str(images), "--anno", str(bad), "--out",
                   str(out),
                   *EXTRACT, "--workers", "2")
    line = one_error(proc.stderr, images / anno["filenames"][2])
    assert proc.returncode == 2 and f"but {bad} gives {w}x{h}" in line
    done = FeatureFile(out, require_complete=False).done  # what was finished before is kept
    assert done[:2].all() and not done[2]


# ----------------------------------------------------------------- seeded random weights
def test_random_weights_are_seeded_and_recorded(photos, tmp_path) -> None:
    images, anno = photos
    paths = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        paths[name] = tmp_path / f"{name}.h5"
        assert extract_main(["--images", str(images), "--anno", str(anno), "--out",
                             str(paths[name]),
                             *EXTRACT, "--workers", "0", "--seed", str(seed)]) == 0
    a, b, c = (FeatureFile(paths[k]) for k in "abc")
    assert a.provenance["weights_sha256"] == "random" and a.provenance["weights_seed"] == 3
    assert np.array_equal(a.get(0, None), b.get(0, None))
    assert not np.array_equal(a.get(0, None), c.get(0, None))


# ----------------------------------------------------------------- a full disk
def mount_tmpfs(path: Path, size: str) -> Path:
    """A real small file system at ``path`` (skips where mounting is not allowed)."""
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.decode().strip()})")
    return path


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_full_disk_is_refused_before_starting(photos, tmp_path, capsys) -> None:
    images, anno = photos
    disk = mount_tmpfs(tmp_path / "disk", "3m")
    try:
        out = disk / "features.h5"
        assert extract_main(["--images", str(images), "--anno", str(anno), "--out", str(out),
                             "--backbone", "resnet50", "--weights", "none", "--input-size", "400",
                             "400",
                             "--workers", "0", "--device", "cpu"]) == 2
        line = one_error(capsys.readouterr().err, out)
        assert "writing the feature maps of 4 images needs about 5.1 MB" in line and "free" in line
    finally:
        unmount(disk)


def test_disk_that_fills_anyway_is_one_line_and_resumable(photos, tmp_path, capsys,
                                                          monkeypatch) -> None:
    """Another program fills the disk after the free-space check passed: the run still ends in
    one line, keeps the images it finished, and resumes once there is space again."""
    import data_prep.extract as extract_mod

    images, anno = photos
    disk = mount_tmpfs(tmp_path / "disk", "40m")
    try:
        out = disk / "features.h5"
        filler = disk / "other_program.bin"
        args = ["--images", str(images), "--anno", str(anno), "--out", str(out), "--backbone",
                "resnet50",
                "--weights", "none", "--input-size", "112", "112", "--workers", "0", "--batch-size",
                "1",
                "--device", "cpu"]
        real_check = extract_mod.require_free_space

        def check_then_fill(*a, **k) -> None:
            real_check(*a, **k)
            filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - 150_000))  # room for one map

        monkeypatch.setattr(extract_mod, "require_free_space", check_then_fill)
        assert extract_main(args) == 2
        line = one_error(capsys.readouterr().err, out)
        assert "disk filled up" in line and "rerun" in line
        kept = FeatureFile(out, require_complete=False).done
        assert 1 <= kept.sum() < len(kept)
        monkeypatch.setattr(extract_mod, "require_free_space", real_check)
        filler.unlink()
        assert extract_main(args) == 0
        assert FeatureFile(out).done.all()
    finally:
        unmount(disk)


# ----------------------------------------------------------------- nothing blocks a rerun
def test_stale_temp_files_of_a_killed_creation_are_replaced(photos, tmp_path) -> None:
    images, anno = photos
    out = tmp_path / "features.h5"
    tmp = tmp_path / "features.h5.tmp"
    tmp.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # what a kill during creation leaves
    assert extract_main(["--images", str(images), "--anno", str(anno), "--out", str(out), *EXTRACT,
                         "--workers", "0"]) == 0
    assert FeatureFile(out).done.all() and not tmp.exists()


def test_extract_killed_at_creation_and_while_writing_then_rerun(photos, tmp_path) -> None:
    images, anno = photos
    ref = tmp_path / "ref.h5"
    assert extract_main(["--images", str(images), "--anno", str(anno), "--out", str(ref), *EXTRACT,
                         "--workers", "0", "--batch-size", "1"]) == 0
    out = tmp_path / "features.h5"
    args = ["-m", "data_prep.extract", "--images", str(images), "--anno", str(anno), "--out",
            str(out), *EXTRACT,
            "--workers", "0", "--batch-size", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # kill -9 right after the file is made, then right after the first image is written
    for marker in ("to go on", "done 1/"):
        proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=REPO)
        for line in proc.stdout:
            if marker in line:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert out.exists()
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    got, want = FeatureFile(out), FeatureFile(ref)
    for i in range(len(want)):
        assert np.array_equal(got.get(i, None), want.get(i, None))
    assert not Path(str(out) + ".tmp").exists()


def test_train_killed_mid_epoch_resumes_to_the_same_weights(tmp_path) -> None:
    root = tmp_path / "data"
    make_split(root, "train2015", 40, seed=3)
    extra = {"optim.epochs": 4, "optim.batch_size": 2}
    assert hoi_main(["train", "--config", str(REPO / "configs/hico/base.yaml"),
                     *run_overrides(root, tmp_path / "ref", **extra)]) == 0
    ref = torch.load(tmp_path / "ref" / "checkpoint.pth", weights_only=True)
    out = tmp_path / "run"
    args = ["-m", "hoi", "train", "--config", str(REPO / "configs/hico/base.yaml"),
            *run_overrides(root, out, **extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env=env, cwd=REPO)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "checkpoint.pth").exists():
        time.sleep(0.005)
    time.sleep(0.05)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(out / "checkpoint.pth", weights_only=True)["epoch"]
    assert killed_at < ref["epoch"], ("the run finished before the kill; "
                                      "the test needs a longer epoch")
    (out / ".checkpoint.pth.abc123.tmp").write_bytes(b"half a checkpoint")  # a kill during a save
    rerun = run_cli(*args[:5], "--resume", *args[5:])
    assert rerun.returncode == 0, rerun.stderr
    got = torch.load(out / "checkpoint.pth", weights_only=True)
    assert got["epoch"] == ref["epoch"] == 3
    for key in ref["model"]:
        assert torch.equal(got["model"][key], ref["model"][key]), key
    assert not list(out.glob(".checkpoint.pth.*.tmp"))


def test_debug_flag_shows_the_traceback(tmp_path) -> None:
    missing = tmp_path / "missing.json"
    proc = run_cli("-m", "hoi", "eval", "--anno", str(missing), "--detections",
                   str(tmp_path / "r.npz"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: annotation file not found: {missing}" in proc.stderr
    proc = run_cli("-m", "hoi", "eval", "--anno", str(missing), "--detections",
                   str(tmp_path / "r.npz"), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_torchrun_rank_errors_are_one_line(tmp_path) -> None:
    """Both ranks of scripts/train.sh (torchrun, gloo) fail on the same missing file: one line."""
    missing = tmp_path / "nowhere"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29533"}
    env.pop("HOI_DEBUG", None)
    proc = subprocess.run(["bash", str(REPO / "scripts/train.sh"), "2",
                           str(REPO / "configs/hico/base.yaml"),
                           f"data.root={missing}", "device=cpu", f"output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    line = one_error(proc.stderr, missing / "instances_train2015.json")
    # the rank that fails second may be stopped by torchrun before it reports
    assert proc.returncode == 2 and line.endswith(("(ranks 0, 1)", "(rank 0)", "(rank 1)"))


def test_detection_writer_on_a_full_disk_raises_and_resumes(tmp_path) -> None:
    """The partial detections file takes its space at the first write (HDF5 fills contiguous
    datasets then): a full disk raises there, in one line, and the rerun resumes."""
    from hoi.data.cache import ImageProposals, ProposalFile, ProposalWriter
    from hoi.errors import DiskFullError

    disk = mount_tmpfs(tmp_path / "disk", "2m")
    try:
        names = [f"HICO_test2015_{i:08d}.jpg" for i in range(300)]
        det = ImageProposals(np.tile([[1, 2, 30, 40]], (100, 1)), np.full(100, 0.5),
                             np.full(100, 49))
        writer = ProposalWriter(disk / "d.h5", names, 100, {"kind": "detections"})
        (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - 20_000))
        with pytest.raises(DiskFullError, match=r"d.h5.partial: the disk filled up while writing"):
            for i in range(len(names)):
                writer.write(i, det)
                writer.flush()
        assert not writer.done.any()
        writer.file.close()
        (disk / "filler").unlink()
        writer = ProposalWriter(disk / "d.h5", names, 100, {"kind": "detections"})
        for i in writer.pending():
            writer.write(i, det)
        writer.finalize()
        assert len(ProposalFile(disk / "d.h5")[299]) == 100
    finally:
        unmount(disk)


def test_pretrain_errors_are_the_same_one_line(tmp_path, capsys) -> None:
    missing = tmp_path / "imagenet"
    code = hoi_main(["pretrain", "--config", str(REPO / "configs/demo/pretrain_resnet50.yaml"),
                     f"data.root={missing}", f"output_dir={tmp_path / 'run'}", "device=cpu"])
    line = one_error(capsys.readouterr().err, missing)
    assert code == 2 and line.startswith("error: ")


def test_a_training_that_goes_non_finite_stops_in_one_line(run_dir, tmp_path, capsys) -> None:
    root, _ = run_dir
    out = tmp_path / "nan_run"
    code = hoi_main(["train", "--config", str(REPO / "configs/hico/base.yaml"),
                     *run_overrides(root, out, **{"optim.epochs": 2, "optim.lr": 1e30,
                                                  "model.spatial_lr": 1e30})])
    line = one_error(capsys.readouterr().err, "non-finite", "epoch 1, iteration")
    assert code == 2 and "lower optim.lr" in line
