"""The layering of docs/architecture.md ("The rooms") holds: a module of ``hoi`` imports only
from its own room and the rooms before it, never back up; ``data_prep`` sits on top."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# bottom first, as in docs/architecture.md; a room is a module prefix
ROOMS = [
    ["hoi.errors", "hoi.config", "hoi.registry", "hoi.provenance", "hoi.resources"],
    ["hoi.engine"],
    ["hoi.data"],
    ["hoi.evaluation"],
    ["hoi.models", "hoi.detectron2_compat", "hoi.detector", "hoi.detection"],
    ["hoi.vis"],
    ["hoi.inputs"],
    ["hoi.inference.scoring"],
    ["hoi.hoi_config"],
    ["hoi.inference", "hoi.training", "hoi.pretrain"],
    ["hoi.commands", "hoi.cli", "hoi.__main__", "hoi"],
    ["data_prep"],
]


def room_of(module: str) -> int:
    best, best_len = None, -1
    for i, prefixes in enumerate(ROOMS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    assert best is not None, f"{module} is in no room of ROOMS (add it, and to the docs)"
    return best


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, m) for line, m in found if m.split(".")[0] in ("hoi", "data_prep")]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_runs_back_up() -> None:
    back_up = []
    for path in sorted([*REPO.glob("hoi/**/*.py"), *REPO.glob("data_prep/**/*.py")]):
        own = module_name(path)
        for line, imported in imports_of(path):
            if imported == "hoi" and own.startswith("data_prep"):
                continue  # data_prep reads hoi.__version__
            if room_of(imported) > room_of(own):
                back_up.append(f"{path.relative_to(REPO)}:{line} ({own}) imports {imported}")
    assert not back_up, "imports running back up the layers:\n" + "\n".join(back_up)


def test_training_and_inference_do_not_import_each_other_beyond_scoring() -> None:
    crossing = []
    for room, other in (("training", "inference"), ("inference", "training")):
        for path in REPO.glob(f"hoi/{room}/*.py"):
            for line, imported in imports_of(path):
                if imported.startswith(f"hoi.{other}") and imported != "hoi.inference.scoring":
                    crossing.append(f"{path.relative_to(REPO)}:{line} imports {imported}")
    assert not crossing, "\n".join(crossing)
