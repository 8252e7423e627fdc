#!/usr/bin/env python
"""The demo: the whole pipeline on the synthetic mini HICO-DET, for a plain and a SAC
ResNet-50, ending in ``outputs/demo/report.md`` (tables, pictures, the exact commands).

    python scripts/demo.py [--out outputs/demo] [--fresh] [--detector-weights FILE]

Each step is a real command of the project (the same a user runs on HICO-DET), run as a
subprocess and recorded with its wall time; a step whose outputs exist is skipped, so a
killed demo resumes. The plain and the SAC pipelines run side by side (one core each).
Without ``--detector-weights`` (a Detectron2 Faster R-CNN model file), detections are the
ground-truth boxes jittered by 5% of their size: the demo says so in its output and report.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = ("resnet50", "sac_resnet50")
TITLES = {"resnet50": "VSGNet + ResNet-50", "sac_resnet50": "VSGNet + SAC-ResNet-50"}
SPLITS = ("train2015", "test2015")
INPUT_SIZE = ("256", "256")


@dataclass
class Step:
    name: str
    cmd: list[str]
    outputs: list[Path]
    seconds: float = 0.0
    skipped: bool = False
    log: Path | None = None


@dataclass
class Demo:
    out: Path
    steps: list[Step] = field(default_factory=list)

    def run(self, name: str, cmd: list[str], outputs: list[Path]) -> Step:
        """Run ``cmd`` unless all ``outputs`` exist; its output goes to logs/<name>.log."""
        step = Step(name, [str(c) for c in cmd], outputs)
        self.steps.append(step)
        step.log = self.out / "logs" / f"{name}.log"
        if outputs and all(p.exists() for p in outputs):
            step.skipped = True
            print(f"[demo] {name}: done before, skipped", flush=True)
            return step
        step.log.parent.mkdir(parents=True, exist_ok=True)
        print(f"[demo] {name}: {shlex.join(step.cmd)}", flush=True)
        start = time.perf_counter()
        with open(step.log, "w") as log:
            proc = subprocess.run(step.cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        step.seconds = time.perf_counter() - start
        if proc.returncode != 0:
            tail = step.log.read_text()[-3000:]
            raise SystemExit(f"[demo] step '{name}' failed (exit {proc.returncode}); log "
                             f"{step.log}:\n{tail}")
        print(f"[demo] {name}: {step.seconds:.0f} s", flush=True)
        return step


def py(*args: object) -> list[str]:
    return [sys.executable, *map(str, args)]


def hoi(*args: object) -> list[str]:
    return [sys.executable, "-m", "hoi", *map(str, args)]


def shared_steps(demo: Demo, detector_weights: str | None) -> None:
    out = demo.out
    raw, data = out / "raw", out / "data"
    demo.run("synth",
             py("-m", "data_prep.synth", "--out", raw, "--train", 160, "--test", 60, "--seed", 0),
             [raw / "anno_bbox.mat", raw / "anno.mat"])
    demo.run("convert",
             py("-m", "data_prep.convert", "--mat", raw / "anno_bbox.mat", "--anno-mat",
                raw / "anno.mat",
                           "--out", data), [data / f"instances_{s}.json" for s in SPLITS])
    for split in SPLITS:
        demo.run(f"validate_{split}",
                 py("-m", "data_prep.validate", data / f"instances_{split}.json"), [])
    demo.run("crops", py("-m", "data_prep.crops", "--images", raw / "images" / "train2015",
                         "--anno", data / "instances_train2015.json", "--out", out / "crops",
                         "--size", 32),
             [out / "crops" / "val"])
    for split in SPLITS:
        target = data / "cache" / f"detections_{split}.h5"
        if detector_weights:
            cmd = py("-m", "data_prep.detect", "--images", raw / "images" / split, "--anno",
                     data / f"instances_{split}.json", "--out", target, "--weights",
                     detector_weights,
                     "--device", "cpu", "--workers", 0)
        else:
            cmd = py("-m", "data_prep.detect", "--source", "gt", "--jitter", 0.05, "--seed", 0,
                     "--anno", data / f"instances_{split}.json", "--out", target)
        demo.run(f"detect_{split}", cmd, [target])


def backbone_steps(demo: Demo, arch: str) -> None:
    out = demo.out
    raw, data = out / "raw", out / "data"
    pre = out / "pretrain" / arch
    demo.run(f"pretrain_{arch}", hoi("pretrain", "--config", f"configs/demo/pretrain_{arch}.yaml",
                                     f"data.root={out / 'crops'}", f"output_dir={pre}",
                                     "progress=false"),
             [pre / "checkpoint.pth"])
    demo.run(f"export_{arch}", hoi("export-backbone", pre / "checkpoint.pth", pre / "backbone.pth"),
             [pre / "backbone.pth"])
    for split in SPLITS:
        target = data / "cache" / arch / f"features_{split}.h5"
        demo.run(f"extract_{arch}_{split}",
                 py("-m", "data_prep.extract", "--images", raw / "images" / split, "--anno",
                    data / f"instances_{split}.json", "--backbone", arch, "--weights",
                    pre / "backbone.pth",
                    "--out", target, "--input-size", *INPUT_SIZE, "--workers", 0, "--device", "cpu",
                    "--batch-size", 4),
                 [target])
    run_dir = out / "train" / arch
    config = f"configs/demo/vsgnet_{arch}.yaml"
    common = [f"data.root={data}", "progress=false"]
    # the untrained reference: the same model at its initial weights (optim.epochs=0)
    init_dir = out / "train" / f"{arch}_untrained"
    demo.run(f"untrained_{arch}",
             hoi("train", "--config", config, *common, f"output_dir={init_dir}",
                                      "optim.epochs=0"),
             [init_dir / "best.pth"])
    demo.run(f"train_{arch}", hoi("train", "--config", config, *common, f"output_dir={run_dir}"),
             [run_dir / "best.pth"])
    results = out / "results"
    for tag, ckpt in ((arch, run_dir / "best.pth"), (f"{arch}_untrained", init_dir / "best.pth")):
        npz = results / f"{tag}.npz"
        demo.run(f"test_{tag}",
                 hoi("test", "--checkpoint", ckpt, "--out", npz, "--device", "cpu", "--workers", 0),
                 [npz])
        demo.run(f"eval_{tag}",
                 hoi("eval", "--anno", data / "instances_test2015.json", "--detections", npz,
                                    "--classes", "annotated", "--json",
                                    results / f"{tag}_eval.json",
                                    "--per-class", results / f"{tag}_per_class.csv"),
                 [results / f"{tag}_eval.json"])


def picture_steps(demo: Demo) -> None:
    out = demo.out
    raw, data, figs = out / "raw", out / "data", out / "figures"
    test_images = raw / "images" / "test2015"
    demo.run("vis_detections",
             hoi("vis", "detections", "--results", out / "results" / "sac_resnet50.npz",
                                   "--images", test_images, "--anno",
                                   data / "instances_test2015.json",
                                   "--out", figs / "detections", "--top", 3, "--max-images", 4),
             [figs / "detections"])
    samples = [test_images / f"HICO_test2015_{i:08d}.jpg" for i in (1, 2)]
    weights = out / "pretrain" / "sac_resnet50" / "backbone.pth"
    demo.run("vis_attention",
             hoi("vis", "attention", "--backbone", "sac_resnet50", "--weights", weights,
                                  "--image", *samples, "--out", figs / "attention", "--input-size",
                                  *INPUT_SIZE),
             [figs / "attention"])
    demo.run("vis_beta",
             hoi("vis", "beta-similarity", "--backbone", "sac_resnet50", "--weights", weights,
                             "--image", *samples, "--out", figs / "beta_similarity.png",
                             "--input-size", *INPUT_SIZE),
             [figs / "beta_similarity.png"])
    demo.run("vis_pr", hoi("vis", "pr", "--anno", data / "instances_test2015.json",
                           "--results", out / "results" / "sac_resnet50.npz", "--out", figs / "pr",
                           "--top", 6),
             [figs / "pr"])


def diagnosis_step(demo: Demo) -> None:
    """`hoi diagnose` of the SAC run's test results, with the ResNet-50 run's beside them."""
    out = demo.out
    results, target = out / "results", out / "figures" / "diagnosis"
    demo.run("diagnose", hoi("diagnose", "--anno", out / "data" / "instances_test2015.json",
                             "--detections", results / "sac_resnet50.npz", "--compare",
                             results / "resnet50.npz",
                             "--classes", "annotated", "--labels", "SAC", "ResNet-50", "--out",
                             target),
             [target / "diagnosis.json"])


def diagnosis_report(out: Path) -> list[str]:
    """The report's section on the diagnosis: its table and pictures (nothing if it was not run)."""
    target = out / "figures" / "diagnosis"
    if not (target / "diagnosis.md").exists():
        return []
    lines = ["## Where the mAP goes: `hoi diagnose`", "",
             "Every false positive of the SAC and the ResNet-50 run gets one error type (the first "
             "that applies:",
             "duplicate, wrong verb, wrong object, mis-grouped human and object, human / object / "
             "both boxes",
             "mislocalised, another class mislocalised, background); `+Full` etc. are the mAP "
             "points gained",
             "if that type's false positives were removed and the rest scored again (Default "
             "setting, the",
             "classes of the test set).", "",
             (target / "diagnosis.md").read_text().strip(), ""]
    for name in ("compare.png", "breakdown.png", "score_ranking.png"):
        if (target / name).exists():
            lines.append(f"![{Path(name).stem}]({(target / name).relative_to(out)})")
    return lines + [""]


def _row(title: str, path: Path) -> str:
    res = json.loads(path.read_text())
    cells = [f"{100 * res[s][k]:.2f}" for s in ("default", "known_object") for k in ("full", "rare",
                                                                                     "non_rare")]
    return f"| {title} | " + " | ".join(cells) + " |"


def write_report(demo: Demo, detector_weights: str | None, wall: float) -> Path:
    out = demo.out
    results = out / "results"
    lines = ["# Demo report: VSGNet with plain and SAC ResNet-50 on the synthetic mini HICO-DET",
             ""]
    lines += [
        "Made by `bash scripts/demo.sh`. The synthetic data set (`data_prep.synth`: 160 training "
        "and 60 test",
        "pictures in the official HICO-DET layout) is converted, validated, and run through the "
        "same stages as",
        "the real data set. The backbones are pretrained for a few epochs on 32x32 crops of the "
        "training",
        "pictures with the ImageNet training code (the stand-in for ImageNet pretraining), frozen, "
        "and",
        "their layer3 maps at 256x256 input are cached in HDF5.",
        "",
        ("Detections: Detectron2 Faster R-CNN with the given weights." if detector_weights else
         "**Detections: no detector weights were given, so the detections are the ground-truth "
         "boxes jittered "
         "by 5% of their size (score 1)**; pass `--detector-weights FILE` to use Detectron2 "
         "instead."),
        "",
        "mAP (%) on the synthetic test set, official HICO-DET protocol (11-point AP, IoU >= 0.5 on "
        "both boxes),",
        "averaged over the HOI classes that occur in the test set (`hoi eval --classes "
        "annotated`).",
        "Rare = fewer than 10 training pairs in the synthetic training set.",
        "",
        "| model | Default Full | Default Rare | Default Non-Rare | KO Full | KO Rare | KO "
        "Non-Rare |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for arch in BACKBONES:
        lines.append(_row(TITLES[arch], results / f"{arch}_eval.json"))
    for arch in BACKBONES:
        lines.append(_row(f"{TITLES[arch]}, untrained heads",
                          results / f"{arch}_untrained_eval.json"))
    counts = json.loads((results / "sac_resnet50_eval.json").read_text())["default"].get(
        "num_classes", {})
    if counts:
        lines += ["", f"Classes averaged: {counts.get('full')} (rare {counts.get('rare')}, "
                      f"non-rare {counts.get('non_rare')})."]
    pre_lines = []
    for arch in BACKBONES:
        top1 = pretrain_top1(out, arch)
        if top1:
            pre_lines.append(f"| {arch} | {len(top1)} | {top1[-1]:.1f} |")
    if pre_lines:
        lines += ["", "Backbone pretraining on crops (validation top-1 %, last epoch):", "",
                  "| backbone | epochs | val top-1 |", "|---|---:|---:|", *pre_lines]
    figs = out / "figures"
    lines += ["", "## Pictures", ""]
    for title, pattern in (("HOI detections (SAC model, test set)", "detections/*.png"),
                           ("SAC attention maps alpha (paper Fig. 4) and norm maps (Fig. 5)",
                            "attention/*.png"),
                           ("Cosine similarity of beta with and without softmax (Fig. 3)",
                            "beta_similarity.png"),
                           ("Precision-recall curves (SAC model)", "pr/*.png")):
        files = sorted(figs.glob(pattern))[:4]
        if files:
            lines += [f"### {title}",
                      ""] + [f"![{f.stem}]({f.relative_to(out)})" for f in files] + [""]
    lines += diagnosis_report(out)
    lines += ["## Commands", "", "Each step, as run (a step with no time was done by an earlier "
                                 "run):", "", "```"]
    for step in demo.steps:
        lines.append(f"# {step.name}" + ("" if step.skipped else f" ({step.seconds:.0f} s)"))
        lines.append(shlex.join(step.cmd))
    lines += ["```", "", f"Wall time of this run: {wall / 60:.1f} min."]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def pretrain_top1(out: Path, arch: str) -> list[float]:
    """The validation top-1 of each evaluated epoch of the demo's pretraining of ``arch``."""
    lines = (out / "pretrain" / arch / "metrics.jsonl").read_text().splitlines()
    return [m["val/top1"] for m in map(json.loads, filter(str.strip, lines)) if "val/top1" in m]


def write_summary(out: Path, detector_weights: str | None, wall: float) -> Path:
    """``summary.json``: the figures the README's demo table is made of
    (scripts/readme_demo_table.py)."""
    rows = []
    tags = [(arch, TITLES[arch]) for arch in BACKBONES]
    tags += [(f"{arch}_untrained", f"{TITLES[arch]}, untrained heads") for arch in BACKBONES]
    for tag, title in tags:  # the report's order
        res = json.loads((out / "results" / f"{tag}_eval.json").read_text())["default"]
        rows.append({"model": title, **{k: round(100 * res[k], 2) for k in ("full", "rare",
                                                                            "non_rare")}})
    counts = json.loads((out / "results" / "sac_resnet50_eval.json").read_text())["default"].get(
        "num_classes", {})
    pretrain = {}
    for arch in BACKBONES:
        top1 = pretrain_top1(out, arch)
        if top1:
            pretrain[arch] = {"epochs": len(top1), "top1": round(top1[-1], 1)}
    summary = {"rows": rows, "num_classes": counts, "pretrain": pretrain,
               "wall_min": round(wall / 60, 1),
               "detections": "detectron2" if detector_weights else "jittered_gt"}
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "demo")
    p.add_argument("--fresh", action="store_true", help="delete --out first")
    p.add_argument("--detector-weights", default=None, help="Detectron2 Faster R-CNN weights "
                                                            "(.pkl/.pth)")
    args = p.parse_args()
    out = args.out.resolve()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    demo = Demo(out)
    start = time.perf_counter()
    if not args.detector_weights:
        print("[demo] no --detector-weights: detections are ground-truth boxes jittered by 5% "
              "(said in the report)",
              flush=True)
    shared_steps(demo, args.detector_weights)
    branches = [Demo(out) for _ in BACKBONES]
    with ThreadPoolExecutor(len(BACKBONES)) as pool:  # one core per backbone pipeline
        for future in [pool.submit(backbone_steps, d, arch) for d, arch in zip(branches,
                                                                               BACKBONES)]:
            future.result()
    for d in branches:
        demo.steps.extend(d.steps)
    picture_steps(demo)
    diagnosis_step(demo)
    wall = time.perf_counter() - start
    report = write_report(demo, args.detector_weights, wall)
    summary = write_summary(out, args.detector_weights, wall)
    print(report.read_text().split("## Pictures")[0], flush=True)
    print(f"[demo] done in {wall / 60:.1f} min; report: {report}; README table: "
          f"python scripts/readme_demo_table.py {summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
