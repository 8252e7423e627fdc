"""``hoi test`` behind the command line: the run's config from its checkpoint, the split's
files, sharded inference and one results file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hoi.config import build_config, to_dict
from hoi.engine.checkpoint import CheckpointError, load_checkpoint
from hoi.engine.distributed import DistInfo, all_gather_objects, barrier
from hoi.engine.logging import LOGGER_NAME, setup_logging
from hoi.hoi_config import HOITrainConfig, validate
from hoi.inference.scoring import concat_rows, predict
from hoi.inputs.dataset import HOIDataset
from hoi.inputs.loaders import inference_loader, open_split
from hoi.models.heads.vsgnet import VSGNet
from hoi.provenance import ALLOW_FLAG, FEATURE_FIELDS, features_record, field_mismatches, resolve
from hoi.training.train_heads import checkpoint_provenance, load_model_state, model_arch

log = logging.getLogger(LOGGER_NAME)


def test_config(args: argparse.Namespace) -> HOITrainConfig:
    """The checkpoint's run config with the command line's overrides on top."""
    ckpt = load_checkpoint(args.checkpoint)
    if "config" not in ckpt or "arch" not in ckpt:
        raise CheckpointError(f"{args.checkpoint}: not a hoi train checkpoint (no config/arch entries)")
    overrides = list(args.overrides)
    if args.batch_size is not None:
        overrides.append(f"test.batch_size={args.batch_size}")
    if args.workers is not None:
        overrides.append(f"data.workers={args.workers}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    if getattr(args, "allow_mismatch", False):
        overrides.append("data.allow_mismatch=true")
    cfg = build_config(HOITrainConfig, None, overrides, base=ckpt["config"])
    validate(cfg)
    return cfg


def run_test(cfg: HOITrainConfig, args: argparse.Namespace, dist: DistInfo) -> Path:
    """Write the HOI detections of ``args.checkpoint`` on ``args.split`` to ``args.out``."""
    setup_logging(None, dist.is_main)
    ckpt = load_checkpoint(args.checkpoint, expected_arch=model_arch(cfg), map_location="cpu")
    model = VSGNet(cfg.model)
    load_model_state(model, ckpt["model"], str(args.checkpoint))
    model.to(dist.device)
    split = args.split or cfg.data.test_split
    files = open_split(cfg, split, args.anno, args.detections, args.features, allow_flag=ALLOW_FLAG)
    trained_on = checkpoint_provenance(ckpt)
    if trained_on is None:
        files.accepted_mismatches += resolve(
            [f"{args.checkpoint}: records no provenance of its training features, so {files.features.path} "
             f"cannot be checked against them (expected a checkpoint of this version of hoi train)"],
            cfg.data.allow_mismatch, ALLOW_FLAG)
    else:  # the test maps must mean what the training maps meant
        files.accepted_mismatches += resolve(
            field_mismatches(f"{files.features.path}", features_record(files.features.provenance),
                             f"the training features of {args.checkpoint}",
                             features_record(trained_on.get("features") or {}), FEATURE_FIELDS),
            cfg.data.allow_mismatch, ALLOW_FLAG)
    dataset = HOIDataset(files.anno, files.detections, files.features, range(len(files.anno["filenames"])),
                         cfg.pairs, with_labels=False)
    loader = inference_loader(dataset, cfg.test.batch_size, cfg.data.workers, dist.rank, dist.world_size,
                              dist.device.type == "cuda")
    use_amp = cfg.amp and dist.device.type == "cuda"
    parts = predict(model, loader, dist.device, cfg.test, use_amp, cfg.progress and dist.is_main)
    gathered = all_gather_objects(parts)
    out = Path(args.out)
    if dist.is_main:
        det = concat_rows([p for rank_parts in gathered for p in rank_parts], list(files.anno["filenames"]))
        det.meta = {"checkpoint": str(args.checkpoint), "epoch": int(ckpt.get("epoch", -1)), "split": split,
                    "arch": cfg.arch, "config": to_dict(cfg), "annotation": files.fingerprint,
                    "test_files": files.provenance(), "trained_on": trained_on,
                    "accepted_mismatches": files.accepted_mismatches}
        out.parent.mkdir(parents=True, exist_ok=True)
        det.save(out)
        log.info("%d HOI detections over %d images -> %s", len(det), len(dataset), out)
    barrier()
    return out
