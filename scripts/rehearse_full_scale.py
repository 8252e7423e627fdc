"""Full-scale rehearsal: every stage of the pipeline at HICO-DET's real image and pair counts,
without the images, with the cost of each stage (wall time, peak RSS, disk written, throughput).

    bash scripts/rehearse_full_scale.sh --out DIR [--fraction F] [--channels C] [--iters K]

Stages, each run as its own process (peak RSS = the largest sampled sum of the proportional set
sizes of the process and its children, e.g. DataLoader workers, so that shared pages count once,
or the process's own peak RSS when that is larger, as for a stage shorter than the sampling):

1. ``convert_train`` / ``convert_test``: ``python -m data_prep.convert --hake`` (HAKE's training
   split) and ``--mat instances_test2015.json`` (accepted as it is).
2. ``detect_train`` / ``detect_test``: detections made from the ground truth, written through the
   real ``ProposalWriter`` (per-image writes, a flush per batch, ``finalize``) with the provenance
   ``data_prep.detect`` records. Each distinct GT box is found with probability ``recall`` and
   jittered (normal noise, 5 % of its size); false detections are drawn at random places, up
   to the 15 humans / 15 objects that the pair stage keeps. Scores: true boxes Beta(6, 1.5)
   (mean 0.8: a detector is confident on what the annotators boxed), false ones 0.05 + 0.95 Beta(1,
   5)
   (mean 0.21: most fall under the 0.3 object / 0.6 human thresholds, as the low-score tail of
   a Faster R-CNN at score 0.05 does). This sets the number of candidate pairs per image, which
   drives the cost of training and test; it is an assumption, reported as pairs per image.
3. ``features_train`` / ``features_test``: maps of the real 25x25 size but ``--channels`` C
   channels (1024 in the real cache) of random values, written through the real
   ``FeatureWriter`` (one chunk per image, a flush per batch of 8 as ``data_prep.extract``).
4. ``train``: ``hoi train`` with a Table XI config, ``model.in_channels=C``, one epoch cut at
   ``--iters`` iterations (``optim.iters_per_epoch``), then the validation on 5 % of train.
5. ``bench_rates``: the training loader alone (images/s, pairs/s with the config's workers)
   beside the model alone (forward + backward + SGD step on batches held in memory), at C
   channels and at the real 1024 (random maps in memory), and inference at both; plus the
   JPEG decode + 400x400 resize rate of one core (a synthetic 640x480 JPEG): the feed limit of
   extraction.
6. ``test``: ``hoi test`` over the whole test split; 7. ``eval``: ``hoi eval --setting both``.

``DIR/costs.json`` (a list of ``{"stage", "wall_s", "peak_rss_mb", "disk_mb", ...}``) and
``DIR/costs.md`` (the table and the projections to 1024 channels) are written at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL_CHANNELS = 1024
MAP_SIZE = (25, 25)  # 400x400 input, stride 16
ASSUMED_SIZE = (640, 480)  # frame of the false detections of an image of unknown size
DETECT_BATCH = 2  # data_prep.detect --batch-size default: one flush per batch
EXTRACT_BATCH = 8  # data_prep.extract --batch-size default
DETECT_PAD = 100  # data_prep.detect --max-per-image default: padding of the partial file


# --------------------------------------------------------------------------- measuring
def _children(pid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry.name))
    return out


def _memory(pid: int) -> int:
    """Proportional set size of a process (bytes): pages shared with its parent (a forked
    DataLoader worker) count once over the tree, not in both. Falls back to the RSS."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def _high_water(pid: int) -> int:
    """The process's own peak resident size since its exec (``VmHWM``, bytes; 0 if gone).
    Unlike ``ru_maxrss`` from wait4, it does not start from the size of the process that forked
    it (the driver)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def _tree_rss(root: int) -> int:
    """Memory (bytes) of ``root`` and all its descendants: the sum of their proportional set
    sizes."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _memory(pid)
        todo.extend(_children(pid))
    return total


def disk_bytes(root: Path) -> int:
    """Bytes of disk blocks held by the files under ``root`` (sparse files count what is
    written)."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def run_measured(stage: str, cmd: Sequence[str], out: Path, log: Path,
                 poll_s: float = 0.25) -> dict[str, Any]:
    """Run ``cmd``; its wall time, peak RSS of its process tree, and the disk it added under
    ``out``."""
    before = disk_bytes(out)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    print(f"[rehearse] {stage}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as logf:
        proc = subprocess.Popen(list(cmd), stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        peak = [0]
        done = threading.Event()

        def poll() -> None:
            # the tree's summed PSS, and the main process's own high-water mark, which keeps
            # a peak that falls between two samples; densely in the first second (short stages)
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss(proc.pid), _high_water(proc.pid))
                done.wait(min(poll_s, 0.02) if time.perf_counter() - start < 1.0 else poll_s)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        # not wait4's ru_maxrss: a spawned child's starts from the driver's resident size
        rc = proc.wait()
        done.set()
        thread.join()
    wall = time.perf_counter() - start
    if rc != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"[rehearse] stage {stage} failed (exit {rc}); its log {log}:\n{tail}")
    row = {"stage": stage, "wall_s": round(wall, 2), "peak_rss_mb": round(peak[0] / 2**20, 1),
           "disk_mb": round((disk_bytes(out) - before) / 2**20, 1)}
    print(f"[rehearse] {stage}: {row['wall_s']} s, peak RSS {row['peak_rss_mb']} MB, disk "
          f"{row['disk_mb']} MB",
          flush=True)
    return row


# --------------------------------------------------------------------------- detections
def synthetic_detections(record: dict, size: Sequence[int], rng: np.random.Generator,
                         recall: float = 0.95,
                         jitter: float = 0.05, false_humans: float = 4.0,
                         false_objects: float = 8.0,
                         max_humans: int = 15, max_objects: int = 15):
    """Detections of one image made from its GT record (see the module docstring).

    Returns ImageProposals: boxes (K, 4) 1-based inclusive inside the image, scores, labels.
    """
    from hoi.data.annotations import size_known
    from hoi.data.cache import ImageProposals, gt_proposals
    from hoi.data.metadata import NUM_OBJECTS, PERSON_OBJECT

    w, h = (int(size[0]), int(size[1])) if size_known(size) else ASSUMED_SIZE
    gt = gt_proposals(record)
    keep = rng.random(len(gt)) < recall
    boxes, labels = gt.boxes[keep], gt.labels[keep]
    person = labels == PERSON_OBJECT
    boxes, labels = (np.concatenate([boxes[person][:max_humans], boxes[~person][:max_objects]]),
                     np.concatenate([labels[person][:max_humans], labels[~person][:max_objects]]))
    if len(boxes):
        wh = np.concatenate([boxes[:, 2:] - boxes[:, :2] + 1] * 2, axis=1)
        boxes = np.round(boxes + rng.normal(0, jitter, boxes.shape) * wh)
    scores = rng.beta(6.0, 1.5, len(boxes))
    n_h = min(rng.poisson(false_humans), max_humans - int((labels == PERSON_OBJECT).sum()))
    n_o = min(rng.poisson(false_objects), max_objects - int((labels != PERSON_OBJECT).sum()))
    n_f = max(n_h, 0) + max(n_o, 0)
    if n_f:
        bw = rng.uniform(0.08, 0.6, n_f) * w
        bh = rng.uniform(0.08, 0.6, n_f) * h
        x1 = rng.uniform(1, np.maximum(w - bw, 1))
        y1 = rng.uniform(1, np.maximum(h - bh, 1))
        false = np.round(np.stack([x1, y1, x1 + bw, y1 + bh], axis=1))
        other = rng.integers(0, NUM_OBJECTS - 1, max(n_o, 0))
        other = other + (other >= PERSON_OBJECT)  # any class but person
        boxes = np.concatenate([boxes.reshape(-1, 4), false])
        labels = np.concatenate([labels, np.full(max(n_h, 0), PERSON_OBJECT), other])
        scores = np.concatenate([scores, 0.05 + 0.95 * rng.beta(1.0, 5.0, n_f)])
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(1, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(1, h)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    return ImageProposals(boxes, scores.astype(np.float32), labels)


def candidate_pairs(det, cfg) -> int:
    """Number of (human, object) pairs the pair stage makes of ``det`` (hoi.inputs.pairs rules)."""
    from hoi.inputs.pairs import select_proposals

    humans, objects = select_proposals(det, cfg)
    self_pairs = len(np.intersect1d(humans, objects)) if cfg.exclude_self_pairs else 0
    return len(humans) * len(objects) - self_pairs


def stage_detect(args: argparse.Namespace) -> None:
    """Detections of a split from its GT, through ProposalWriter, with data_prep.detect's
    provenance."""
    from data_prep.common import code_version
    from hoi.data.cache import ProposalWriter
    from hoi.data.validation import load_valid_annotations
    from hoi.inputs.pairs import PairConfig
    from hoi.provenance import annotation_fingerprint

    anno = load_valid_annotations(args.anno)
    prov = {"kind": "detections", "source": "rehearsal",
            "annotation": annotation_fingerprint(args.anno, anno),
            "code_version": code_version(), "generator": "jittered GT boxes + false detections "
            "(scripts/rehearse_full_scale.py)", "seed": args.seed}
    out = Path(args.target)
    rng = np.random.default_rng(args.seed)
    names, sizes = anno["filenames"], anno["size"]
    writer = ProposalWriter(out, names, DETECT_PAD, prov)
    cfg, n_det, n_pairs = PairConfig(), 0, 0
    t0 = time.perf_counter()
    for start in range(0, len(names), DETECT_BATCH):
        for i in range(start, min(start + DETECT_BATCH, len(names))):
            det = synthetic_detections(anno["annotation"][i], sizes[i], rng)
            writer.write(i, det)
            n_det += len(det)
            n_pairs += candidate_pairs(det, cfg)
        writer.flush()
    t_write = time.perf_counter() - t0
    writer.finalize()
    stats = {"images": len(names), "detections": n_det, "candidate_pairs": n_pairs,
             "gt_pairs": sum(len(a["hoi"]) for a in anno["annotation"]),
             "write_s": round(t_write, 2), "finalize_s": round(time.perf_counter() - t0 - t_write,
                                                               2)}
    Path(args.stats).write_text(json.dumps(stats))


# --------------------------------------------------------------------------- features
def features_provenance(anno_path: str, anno: dict, channels: int, seed: int) -> dict[str, Any]:
    """The provenance data_prep.extract records, for random maps of a SAC-ResNet-50's layer3
    shape."""
    from data_prep.common import code_version
    from hoi.config import to_dict
    from hoi.data.images import IMAGENET_MEAN, IMAGENET_STD
    from hoi.models.backbones import backbone_config
    from hoi.models.complexity import describe
    from hoi.provenance import RANDOM_WEIGHTS, annotation_fingerprint

    cfg = backbone_config("sac_resnet50")
    return {"backbone": to_dict(cfg), "attention": describe(cfg), "weights": "rehearsal: random "
                                                                             "values",
            "weights_sha256": RANDOM_WEIGHTS, "weights_seed": seed, "input_size": [400, 400],
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "layer": "stage4",
            "stride": 16, "dtype": "float16", "channels_reduced": f"{channels} of {REAL_CHANNELS}",
            "annotation": annotation_fingerprint(anno_path, anno), "code_version": code_version()}


def stage_features(args: argparse.Namespace) -> None:
    """Random maps (C, 25, 25) of every image through FeatureWriter, flushed per batch as extract
    does."""
    from hoi.data.cache import FeatureWriter
    from hoi.data.validation import load_valid_annotations
    from hoi.engine.disk import require_free_space

    anno = load_valid_annotations(args.anno)
    names, sizes = anno["filenames"], anno["size"]
    shape = (args.channels, *MAP_SIZE)
    require_free_space(args.target, len(names) * int(np.prod(shape)) * 2, "the feature maps of "
                                                                          f"{len(names)} images")
    writer = FeatureWriter(args.target, names, sizes, shape,
                           features_provenance(args.anno, anno, args.channels, args.seed))
    rng = np.random.default_rng(args.seed)
    # cycled: the writer is measured, not the RNG
    pool = rng.standard_normal((64, *shape)).astype(np.float16)
    for start in range(0, len(names), EXTRACT_BATCH):
        for i in range(start, min(start + EXTRACT_BATCH, len(names))):
            writer.write(i, pool[i % len(pool)])
        writer.flush()
    writer.close()


# --------------------------------------------------------------------------- rates
def _decode_rate(seconds: float = 3.0) -> float:
    """JPEG decode + 400x400 resize + normalise, images/s on one core (a 640x480 photo-like
    JPEG)."""
    import io

    from PIL import Image

    from hoi.data.images import backbone_input

    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(0, 6, (480, 640, 3)),
                       axis=1)  # smooth rows: JPEG sizes like photos
    arr = np.clip(128 + smooth - smooth.mean(axis=1, keepdims=True), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    data, n, t0 = buf.getvalue(), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        with Image.open(io.BytesIO(data)) as img:
            backbone_input(img.convert("RGB"))
        n += 1
    return n / (time.perf_counter() - t0)


def stage_bench(args: argparse.Namespace) -> None:
    """Loader alone vs model alone (training and inference), at C and at 1024 channels."""
    import torch

    from hoi.data.cache import FeatureFile, FeatureWriter
    from hoi.engine.memory import fix_mmap_threshold
    from hoi.hoi_config import load_config, open_run_split
    from hoi.inputs.dataset import HOIDataset, collate
    from hoi.models.heads import build_head
    from hoi.training.train_heads import build_optimizer, compute_loss

    torch.set_num_threads(1)
    fix_mmap_threshold()  # as the hoi command does
    cfg = load_config(args.config, [f"data.root={args.data}", f"model.in_channels={args.channels}",
                                    f"data.workers={args.workers}", "device=cpu"])
    files = open_run_split(cfg, cfg.data.train_split)
    n_img = len(files.anno["filenames"])
    rng = np.random.default_rng(args.seed)
    probe = HOIDataset(files.anno, files.detections, files.features,
                       rng.permutation(n_img)[:4 * args.batches * 16],
                       cfg.pairs, with_labels=True)
    idx = [probe.indices[k] for k in range(len(probe)) if probe.pairs_of(k).num_pairs > 0]
    bs = cfg.optim.batch_size
    idx = idx[: args.batches * bs]
    dataset = HOIDataset(files.anno, files.detections, files.features, idx, cfg.pairs,
                         with_labels=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=bs, shuffle=False, collate_fn=collate,
                                         num_workers=cfg.data.workers)
    t0 = time.perf_counter()
    batches = list(loader)
    t_load = time.perf_counter() - t0
    images = sum(len(b["index"]) for b in batches)
    pairs = sum(int(b["pair_h"].shape[0]) for b in batches)
    # the same images with maps of the real width (a small file of just them, freshly written,
    # so read from the page cache: the warm case)
    wide_path = Path(args.out) / "bench_features_1024ch.h5"
    names = [files.anno["filenames"][i] for i in idx]
    writer = FeatureWriter(wide_path, names, [files.anno["size"][i] for i in idx],
                           (REAL_CHANNELS, *MAP_SIZE),
                           dict(files.features.provenance, channels_reduced=None))
    pool = rng.standard_normal((8, REAL_CHANNELS, *MAP_SIZE)).astype(np.float16)
    for k in range(len(names)):
        writer.write(k, pool[k % len(pool)])
    writer.close()
    wide = HOIDataset(files.anno, files.detections, FeatureFile(wide_path), idx, cfg.pairs,
                      with_labels=True)
    t0 = time.perf_counter()
    for _ in torch.utils.data.DataLoader(wide, batch_size=bs, shuffle=False, collate_fn=collate,
                                         num_workers=cfg.data.workers):
        pass
    t_wide = time.perf_counter() - t0
    wide_path.unlink()
    result: dict[str, Any] = {"batches": len(batches), "batch_size": bs, "images": images,
                              "pairs": pairs,
                              "loader_workers": cfg.data.workers,
                              "loader_images_per_s": images / t_load,
                              "loader_pairs_per_s": pairs / t_load,
                              "loader_1024ch_images_per_s": images / t_wide,
                              "loader_1024ch_pairs_per_s": pairs / t_wide}
    for channels in (args.channels, REAL_CHANNELS):
        cfg.model.in_channels = channels
        torch.manual_seed(0)
        model = build_head(cfg.model)
        opt, _ = build_optimizer(cfg, model)
        feats = [b["features"] if channels == args.channels else
                 torch.randn(b["features"].shape[0], channels, *MAP_SIZE).half() for b in batches]

        def step(b: dict, f: torch.Tensor, model=model, opt=opt) -> None:
            batch = dict(b, features=f)
            out = model(batch)
            loss, _, _ = compute_loss(cfg, model, out, batch, 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        model.train()
        step(batches[0], feats[0])  # warm-up
        t0 = time.perf_counter()
        for b, f in zip(batches, feats):
            step(b, f)
        t_train = time.perf_counter() - t0
        model.eval()
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b, f in zip(batches, feats):
                batch = dict(b, features=f)
                model.log_scores(model(batch), batch)
        t_inf = time.perf_counter() - t0
        result[f"model_{channels}ch"] = {
            "train_images_per_s": images / t_train, "train_pairs_per_s": pairs / t_train,
            "infer_images_per_s": images / t_inf, "infer_pairs_per_s": pairs / t_inf,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    result["jpeg_decode_resize_images_per_s_per_core"] = _decode_rate()
    Path(args.stats).write_text(json.dumps(result, indent=1))


# --------------------------------------------------------------------------- driver
def _subset_inputs(hake: Path, test: Path, folder: Path, fraction: float) -> tuple[Path, Path]:
    """HAKE's file and the test annotations cut to the first ceil(fraction * N) images (in file
    order; the test file keeps its rare split)."""
    from hoi.data.annotations import load_annotations, save_annotations, subset_annotations
    from hoi.data.hake import read_hake

    folder.mkdir(parents=True, exist_ok=True)
    records = read_hake(hake)
    names = sorted(records)[: max(1, math.ceil(fraction * len(records)))]
    (folder / "hake_train.json").write_text(json.dumps({n: records[n] for n in names}))
    data = load_annotations(test)
    save_annotations(subset_annotations(data, range(max(1, math.ceil(fraction
                                                                     * len(data["filenames"]))))),
                     folder / "instances_test2015.json")
    return folder / "hake_train.json", folder / "instances_test2015.json"


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def _self(stage: str, args: argparse.Namespace, **kw: Any) -> list[str]:
    cmd = _py(str(Path(__file__).resolve()), "--stage", stage, "--out", str(args.out), "--seed",
              str(args.seed),
              "--channels", str(args.channels), "--workers", str(args.workers), "--config",
              args.config,
              "--batches", str(args.batches))
    for k, v in kw.items():
        cmd += [f"--{k}", str(v)]
    return cmd


def rehearse(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = Path(args.out).resolve()
    args.out = out
    data, logs, run_dir = out / "data", out / "logs", out / "run"
    for d in (data, logs, data / "cache" / "sac_resnet50"):
        d.mkdir(parents=True, exist_ok=True)
    shared = Path(args.shared) / "hicodet"
    rows: list[dict[str, Any]] = []
    hake, test_src = shared / "hico-det-instance-level.tar.gz", shared / "instances_test2015.json"
    if args.fraction < 1.0:  # the inputs cut to their first images, so that every stage is small
        hake, test_src = _subset_inputs(hake, test_src, out / "inputs", args.fraction)
    rows.append(run_measured("convert_train",
                             _py("-m", "data_prep.convert", "--hake", str(hake), "--out",
                                 str(data)),
                             out, logs / "convert_train.log"))
    rows.append(run_measured("convert_test",
                             _py("-m", "data_prep.convert", "--mat", str(test_src), "--out",
                                 str(data)),
                             out, logs / "convert_test.log"))
    split_stats: dict[str, dict] = {}
    for split in ("train2015", "test2015"):
        anno = data / f"instances_{split}.json"
        stats = logs / f"detect_{split}.json"
        row = run_measured(f"detect_{split[:-4]}", _self("detect", args, anno=anno, stats=stats,
                           target=data / "cache" / f"detections_{split}.h5"), out,
                           logs / f"detect_{split}.log")
        st = json.loads(stats.read_text())
        split_stats[split] = st
        row.update(images=st["images"], gt_pairs=st["gt_pairs"], detections=st["detections"],
                   candidate_pairs=st["candidate_pairs"],
                   images_per_s=round(st["images"] / row["wall_s"], 1),
                   note=f"GT-made detections through ProposalWriter (write {st['write_s']} s, "
                        f"finalize {st['finalize_s']} s); the GPU detector itself is not run")
        rows.append(row)
    for split in ("train2015", "test2015"):
        target = data / "cache" / "sac_resnet50" / f"features_{split}.h5"
        row = run_measured(f"features_{split[:-4]}",
                           _self("features", args, anno=data / f"instances_{split}.json",
                           target=target, stats=logs / "unused.json"), out,
                           logs / f"features_{split}.log")
        n = split_stats[split]["images"]
        row.update(images=n, images_per_s=round(n / row["wall_s"], 1),
                   disk_mb_at_1024ch=round(row["disk_mb"] * REAL_CHANNELS / args.channels, 1),
                   note=f"random {args.channels}x25x25 float16 maps through FeatureWriter (no "
                        "backbone run)")
        rows.append(row)
    overrides = [f"data.root={data}", f"model.in_channels={args.channels}", "optim.epochs=1",
                 f"optim.iters_per_epoch={args.iters}", f"data.workers={args.workers}",
                 "device=cpu",
                 f"output_dir={run_dir}", "progress=false", "tensorboard=false",
                 f"seed={args.seed}"]
    row = run_measured("train", _py("-m", "hoi", "train", "--config", args.config, *overrides), out,
                       logs / "train.log")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    last = metrics[-1]
    train_images = int(last.get("train/images", 0))
    row.update(iterations=args.iters, images=train_images,
               train_s=round(last.get("time/train_s", 0.0), 2),
               val_s=round(last.get("time/val_s", 0.0), 2),
               pairs_per_s=round(last.get("train/pairs_per_s", 0.0), 1),
               images_per_s=round(train_images / max(last.get("time/train_s", 1e-9), 1e-9), 2),
               note=f"{args.iters} iterations of batch 16 at {args.channels} channels, then "
                    "validation "
                    f"on the held-out 5 % of train; the rest of the wall time is start-up "
                    f"(loading the split, pairs of every training image)")
    rows.append(row)
    bench_stats = logs / "bench_rates.json"
    row = run_measured("bench_rates", _self("bench", args, data=data, stats=bench_stats), out,
                       logs / "bench_rates.log")
    bench = json.loads(bench_stats.read_text())
    row.update({k: (round(v, 2) if isinstance(v, float) else v) for k, v in bench.items()
                if not isinstance(v, dict)})
    for key, val in bench.items():
        if isinstance(val, dict):
            row.update({f"{key}_{k}": round(v, 2) for k, v in val.items()})
    rows.append(row)
    results = out / "results_test2015.npz"
    row = run_measured("test", _py("-m", "hoi", "test", "--checkpoint", str(run_dir / "best.pth"),
                                   "--out",
                       str(results), "--workers", str(args.workers), "--device", "cpu",
                       "progress=false"),
                       out, logs / "test.log")
    n_test = split_stats["test2015"]["images"]
    pairs_test = split_stats["test2015"]["candidate_pairs"]
    row.update(images=n_test, candidate_pairs=pairs_test,
               images_per_s=round(n_test / row["wall_s"], 2),
               pairs_per_s=round(pairs_test / row["wall_s"], 1))
    rows.append(row)
    row = run_measured("eval", _py("-m", "hoi", "eval", "--anno",
                                   str(data / "instances_test2015.json"),
                       "--detections", str(results), "--setting", "both", "--json",
                       str(out / "eval.json")),
                       out, logs / "eval.log")
    with np.load(results) as z:
        row.update(detections=int(len(z["score"])))
    row.update(images=n_test, note="official protocol, Default and Known-Object")
    rows.append(row)
    meta = {"fraction": args.fraction, "channels": args.channels, "real_channels": REAL_CHANNELS,
            "iters": args.iters, "workers": args.workers, "config": args.config,
            "cpus": os.cpu_count(),
            "torch_threads_note": "hoi train/test use torch's default threads; bench_rates uses 1"}
    (out / "costs.json").write_text(json.dumps(rows, indent=1))
    (out / "costs_meta.json").write_text(json.dumps(meta, indent=1))
    (out / "costs.md").write_text(costs_markdown(rows, meta, split_stats, bench))
    print((out / "costs.md").read_text())
    return rows


def _fmt(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if v >= 10 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def costs_markdown(rows: list[dict], meta: dict, split_stats: dict, bench: dict) -> str:
    """The cost table and the projections to the real channel count, as markdown."""
    c, real = meta["channels"], meta["real_channels"]
    lines = [f"# What a full run costs (rehearsal, fraction {meta['fraction']}, {meta['cpus']} "
             "CPUs, no GPU)", "",
             f"Feature maps have {c} of the real {real} channels (random values); the heads are "
             "the Table XI "
             f"heads with model.in_channels={c}. Training: {meta['iters']} iterations of batch 16.",
             "",
             f"| stage | wall s | peak memory MiB | disk MiB | disk MiB at {real} ch | images | "
             "images/s | pairs | pairs/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        pairs = r.get("candidate_pairs", r.get("gt_pairs", r.get("pairs")))
        pps = r.get("pairs_per_s", r.get("loader_pairs_per_s"))
        ips = r.get("images_per_s", r.get("loader_images_per_s"))
        lines.append(f"| {r['stage']} | {_fmt(r['wall_s'])} | {_fmt(r['peak_rss_mb'])} | "
                     f"{_fmt(r['disk_mb'])} | {_fmt(r.get('disk_mb_at_1024ch', r['disk_mb']))} | "
                     f"{_fmt(r.get('images'))} | {_fmt(ips)} | {_fmt(pairs)} | {_fmt(pps)} |")
    tr, te = split_stats["train2015"], split_stats["test2015"]
    m_c, m_r = bench[f"model_{c}ch"], bench[f"model_{real}ch"]
    feat_disk = sum(r.get("disk_mb_at_1024ch", 0.0) for r in rows)
    n_train = int(round(tr["images"] * 0.95))
    decode_rate = bench["jpeg_decode_resize_images_per_s_per_core"]
    lines += ["", "Pairs: GT pairs for convert; candidate (human, object) pairs of the detections "
                  "for detect/test "
              f"({tr['candidate_pairs'] / max(tr['images'], 1):.1f} per training image, "
              f"{te['candidate_pairs'] / max(te['images'], 1):.1f} per test image); the training "
              f"loader's and the model's rates for bench_rates.", "",
              "## Loader beside model (one core each, batch 16)", "",
              "| | images/s | pairs/s |", "|---|---:|---:|",
              f"| loader ({bench['loader_workers']} worker(s)), {c} channels | "
              f"{_fmt(bench['loader_images_per_s'])} | "
              f"{_fmt(bench['loader_pairs_per_s'])} |",
              f"| loader ({bench['loader_workers']} worker(s)), {real} channels (page cache) | "
              f"{_fmt(bench['loader_1024ch_images_per_s'])} | "
              f"{_fmt(bench['loader_1024ch_pairs_per_s'])} |",
              f"| model training step, {c} channels | {_fmt(m_c['train_images_per_s'])} | "
              f"{_fmt(m_c['train_pairs_per_s'])} |",
              f"| model training step, {real} channels | {_fmt(m_r['train_images_per_s'])} | "
              f"{_fmt(m_r['train_pairs_per_s'])} |",
              f"| model inference, {c} channels | {_fmt(m_c['infer_images_per_s'])} | "
              f"{_fmt(m_c['infer_pairs_per_s'])} |",
              f"| model inference, {real} channels | {_fmt(m_r['infer_images_per_s'])} | "
              f"{_fmt(m_r['infer_pairs_per_s'])} |",
              f"| JPEG decode + 400x400 resize (extract's input) | "
              f"{_fmt(bench['jpeg_decode_resize_images_per_s_per_core'])} | - |", "",
              f"## Projected at {real} channels", "",
              f"- feature caches: {feat_disk / 1024:.1f} GiB (the measured bytes x {real}/{c})",
              f"- one training epoch ({n_train:,} images, 95 % of train) on one CPU core: "
              f"{n_train / m_r['train_images_per_s'] / 3600:.1f} h for the model; the loader alone "
              "needs "
              f"{n_train / bench['loader_1024ch_images_per_s'] / 60:.1f} min per worker (maps in "
              "the page cache; "
              f"{feat_disk / 1024:.0f} GiB of maps outgrow most page caches, and then the disk's "
              "read rate sets it)",
              f"- test over {te['images']:,} images on one CPU core: "
              f"{te['images'] / m_r['infer_images_per_s'] / 60:.1f} min "
              f"for the model",
              f"- extraction feed: {tr['images'] + te['images']:,} images / "
              f"{bench['jpeg_decode_resize_images_per_s_per_core']:.0f} per core per s = "
              f"{(tr['images'] + te['images']) / decode_rate / 60:.1f} "
              f"core-minutes of JPEG decoding, the floor of extraction on any GPU", ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (gets data/, run/, logs/, "
                                                "costs.json, costs.md)")
    p.add_argument("--fraction", type=float, default=1.0, help="first fraction of each split's "
                                                               "images")
    p.add_argument("--channels", type=int, default=64, help="feature channels written (real: "
                                                            f"{REAL_CHANNELS})")
    p.add_argument("--iters", type=int, default=40, help="training iterations (batch 16)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers of train/test/bench")
    p.add_argument("--batches", type=int, default=6, help="batches timed by bench_rates")
    p.add_argument("--config", default=str(REPO / "configs/hico/vsgnet_sac_resnet50.yaml"))
    p.add_argument("--shared", default=os.environ.get("HOI_SHARED", str(REPO.parent / "shared")),
                   help="folder holding hicodet/ (HAKE's file and instances_test2015.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", default=None, choices=["detect", "features", "bench"],
                   help=argparse.SUPPRESS)
    p.add_argument("--anno", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    p.add_argument("--stats", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 0 < args.fraction <= 1:
        p.error(f"--fraction must be in (0, 1], got {args.fraction}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from hoi.errors import run_main

    def body(argv_: list[str]) -> int:
        args = parse_args(argv_)
        if args.stage is None:
            if not (Path(args.shared) / "hicodet" / "hico-det-instance-level.tar.gz").is_file():
                raise FileNotFoundError(f"{args.shared}/hicodet/hico-det-instance-level.tar.gz not "
                                        f"found (--shared or HOI_SHARED)")
            rehearse(args)
        else:
            {"detect": stage_detect, "features": stage_features,
             "bench": stage_bench}[args.stage](args)
        return 0

    return run_main(body, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
