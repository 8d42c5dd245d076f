"""benchmarks/gpu_check.sh --tiny: the GPU check's code paths on the CPU, with its JSON and summary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_tiny_runs_every_part_and_writes_its_report(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(result["parts"]) == {"cuda_tests", "sync", "throughput", "grid"}
    assert all(p["status"] == "ok" for p in result["parts"].values())
    assert len(result["parts"]["sync"]["result"]["steps"]) == 12  # 4 losses x 3 sources
    rows = result["parts"]["throughput"]["result"]["rows"]
    assert all(r["images_per_s"] > 0 for r in rows)
    cells = result["parts"]["grid"]["result"]["cells"]
    assert set(cells) >= {"contrastive_tau0.07", "contrastive_tau1.0", "simple"}
    assert all(0 <= c["centroid_norm"] <= 1 and c["steps"] > 0 for c in cells.values())
    summary = (tmp_path / "summary.md").read_text()
    assert re.search(r"Best: \w+, channels_last=\w+, compile=\w+: [\d,]+ images/s", summary)


def test_gpu_check_without_cuda_asks_for_tiny(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--tiny" in proc.stderr
