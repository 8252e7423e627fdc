"""``hoi test``: a trained run's head over a split's cached files, sharded inference, one results
file. Takes plain values (the run config, the loaded checkpoint, paths): the command line only
parses and calls."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hoi.config import to_dict
from hoi.engine.checkpoint import CheckpointError, check_arch
from hoi.engine.distributed import DistInfo, all_gather_objects, barrier
from hoi.engine.logging import LOGGER_NAME, setup_logging
from hoi.engine.loop import load_model_state
from hoi.engine.precision import resolve_amp
from hoi.hoi_config import HOITrainConfig, model_arch, open_run_split
from hoi.inference.scoring import concat_rows, predict
from hoi.inputs.dataset import HOIDataset
from hoi.inputs.loaders import inference_loader
from hoi.models.heads import InteractionHead, build_head
from hoi.provenance import (
    ALLOW_FLAG,
    FEATURE_FIELDS,
    checkpoint_provenance,
    features_record,
    field_mismatches,
    resolve,
)

log = logging.getLogger(LOGGER_NAME)


def head_of_checkpoint(cfg: HOITrainConfig, ckpt: Mapping[str, Any],
                       source: str | Path) -> InteractionHead:
    """The trained head of ``ckpt`` (refused in one line if it is not the head ``cfg``
    describes, or if a weight is NaN or infinite: every score would be NaN and no row written)."""
    check_arch(dict(ckpt), model_arch(cfg), source)
    head = build_head(cfg.model)
    load_model_state(head, ckpt["model"], str(source))
    for name, tensor in head.state_dict().items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise CheckpointError(f"{source}: weight {name} holds NaN or infinite values (expected "
                                  "finite weights; the run diverged before this checkpoint)")
    return head


def run_test(cfg: HOITrainConfig, ckpt: Mapping[str, Any], checkpoint: str | Path, out: str | Path,
             dist: DistInfo, split: str | None = None, annotations: str | Path | None = None,
             detections: str | Path | None = None, features: str | Path | None = None) -> Path:
    """Write the HOI rows of the run in ``ckpt`` (read from ``checkpoint``) on ``split`` (default:
    ``data.test_split``) to ``out``; file paths default to the run's templates."""
    setup_logging(None, dist.is_main)
    head = head_of_checkpoint(cfg, ckpt, checkpoint).to(dist.device)
    split = split or cfg.data.test_split
    files = open_run_split(cfg, split, annotations, detections, features, allow_flag=ALLOW_FLAG)
    trained_on = checkpoint_provenance(ckpt)
    if trained_on is None:
        files.accepted_mismatches += resolve(
            [f"{checkpoint}: records no provenance of its training features, so "
             f"{files.features.path} cannot be checked against them (expected a checkpoint of "
             f"this version of hoi train)"],
            cfg.data.allow_mismatch, ALLOW_FLAG)
    else:  # the test maps must mean what the training maps meant
        files.accepted_mismatches += resolve(
            field_mismatches(f"{files.features.path}", features_record(files.features.provenance),
                             f"the training features of {checkpoint}",
                             features_record(trained_on.get("features") or {}), FEATURE_FIELDS),
            cfg.data.allow_mismatch, ALLOW_FLAG)
    dataset = HOIDataset(files.anno, files.detections, files.features,
                         range(len(files.anno["filenames"])),
                         cfg.pairs, with_labels=False)
    loader = inference_loader(dataset, cfg.test.batch_size, cfg.data.workers, dist.rank,
                              dist.world_size,
                              dist.device.type == "cuda")
    amp_dtype = resolve_amp(cfg.amp, cfg.amp_dtype, dist.device)
    parts = predict(head, loader, dist.device, cfg.test, amp_dtype, cfg.progress and dist.is_main)
    gathered = all_gather_objects(parts)
    out = Path(out)
    if dist.is_main:
        det = concat_rows([p for rank_parts in gathered for p in rank_parts],
                          list(files.anno["filenames"]))
        det.meta = {"checkpoint": str(checkpoint), "epoch": int(ckpt.get("epoch",
                                                                         -1)), "split": split,
                    "arch": cfg.arch, "config": to_dict(cfg), "annotation": files.fingerprint,
                    "test_files": files.provenance(), "trained_on": trained_on,
                    "accepted_mismatches": files.accepted_mismatches}
        out.parent.mkdir(parents=True, exist_ok=True)
        det.save(out)
        log.info("%d HOI detections over %d images -> %s", len(det), len(dataset), out)
    barrier()
    return out
