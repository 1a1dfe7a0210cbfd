"""The edge runtime installs without the deep-learning stack: no edge module may pull it in."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import edge

FORBIDDEN = ("torch", "torchvision", "timm", "onnx", "onnxscript", "training", "export", "calibration")
REPO = Path(__file__).resolve().parents[3]


def test_every_edge_module_imports_without_torch_onnx_or_training_packages():
    modules = ["edge"] + [m.name for m in pkgutil.walk_packages(edge.__path__, "edge.")]
    assert len(modules) > 5
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
