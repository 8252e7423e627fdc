"""The ``hoi`` command: ``hoi info`` tables and JSON, ``hoi env``, and error messages."""

from __future__ import annotations

import json
import subprocess
import sys

from hoi.cli import main


def _hoi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hoi", *args], capture_output=True, text=True, timeout=300
    )


def test_info_json_reports_params_and_both_flop_counts() -> None:
    proc = _hoi("info", "--arch", "sac_resnet50", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert abs(info["params"] / 1e6 - 25.65) <= 0.005
    assert abs(info["flops_paper_order"] / 1e9 / 4.163 - 1) <= 0.01
    assert info["flops"] < info["flops_paper_order"] - 30e6  # the cheap order saves ~39M MACs
    assert info["config"]["attention"]["type"] == "sac"


def test_info_table_other_placement_and_input(capsys) -> None:
    rc = main(["info", "--arch", "resnet50,gc_resnet50", "--input", "400", "400"])
    out = capsys.readouterr().out
    assert rc == 0 and "input 400x400" in out
    assert "resnet50" in out and "gc r=16 after_conv3, stages 2,3,4 (last)" in out
    rc = main(["info", "--arch", "sac_resnet50", "attention.stages=[4]", "attention.blocks=all",
               "--json"])
    info = json.loads(capsys.readouterr().out)
    assert abs(info["params"] / 1e6 - 25.98) <= 0.005


def test_info_errors_are_one_clear_line(capsys) -> None:
    assert main(["info", "--arch", "sac_resnet5"]) == 2
    err = capsys.readouterr().err
    assert "unknown arch 'sac_resnet5'" in err and "sac_resnet50" in err and "Traceback" not in err
    assert main(["info", "--arch", "resnet50", "attention.tipe=sac"]) == 2
    assert "closest valid keys: attention.type" in capsys.readouterr().err


def test_env_reports_versions_and_detectron2() -> None:
    proc = _hoi("env", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    import torch

    from hoi.detectron2_compat import import_detectron2

    assert info["torch"] == torch.__version__
    assert info["cuda_available"] is torch.cuda.is_available()
    assert info["detectron2"] == import_detectron2().__version__
    assert isinstance(info["detectron2_cpp_ops"], bool)
    assert isinstance(info["gpus"], list)


def test_every_command_has_a_summary_and_a_module(capsys) -> None:
    import importlib

    from hoi.cli import COMMANDS, SUMMARIES

    assert set(SUMMARIES) == set(COMMANDS)
    for name, module in COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.run) and callable(mod.add_arguments) and mod.HELP, name
    assert main([]) == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    for name in COMMANDS:  # each listed with its own summary (argparse may wrap it)
        assert f"{name} {SUMMARIES[name]}" in flat, name
