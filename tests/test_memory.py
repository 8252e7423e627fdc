"""hoi.engine.memory: with a fixed mmap threshold, batch-sized temporaries of changing sizes no
longer leave the heap fragmented (resident memory stays flat); without it, it grows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import sys
import numpy as np
from hoi.engine.memory import fix_mmap_threshold
fixed = fix_mmap_threshold(int(sys.argv[1]))
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
keep, start = [], rss()
# 8-24 MB temporaries, a small long-lived block after each (as batches and results)
for i in range(150):
    tmp = np.ones(int((8 + (i * 7) % 17) * 2**20 / 8))
    keep.append(np.ones(2000))
    del tmp
print(fixed, rss() - start)
"""


def _growth(threshold: int) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(threshold)], capture_output=True,
                         text=True,
                         cwd=REPO, timeout=120, check=True).stdout.split()
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_fixed_threshold_keeps_resident_memory_flat() -> None:
    fixed, growth = _growth(1 << 20)
    if not fixed:
        pytest.skip("not glibc")
    dynamic_set, dynamic_growth = _growth(0)
    assert not dynamic_set
    assert growth < 8, growth
    assert dynamic_growth > 3 * max(growth, 8), dynamic_growth  # the fragmentation it prevents
