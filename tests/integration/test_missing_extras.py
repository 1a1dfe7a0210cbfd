"""On an edge-only install, every command that needs an extra says which, in one line, exit 2; --help needs none.

The commands run as real subprocesses under ``without_modules.py``, which makes the extras'
modules (torch, harvesters/genicam, openvino) fail to import exactly as on a machine where they
were never installed. ``--help`` of the training commands must work there too: it proves they
import no torch to print it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES, REPO, daemon_env

LAUNCHER = Path(__file__).with_name("without_modules.py")
TRAIN_MODULES = "torch,torchvision,timm,onnx,onnxscript,nncf"
TOOLS = {"edge-train": "training.cli:main", "edge-export": "export.cli:main", "edge-tradeoff": "studies.tradeoff:main",
         "edge-train-batch": "training.batch:main", "edge-inspect": "edge.cli:main"}


def run(modules: str, tool: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LAUNCHER), modules, TOOLS[tool], *args], capture_output=True,
                          text=True, env=daemon_env(env), cwd=REPO, timeout=300, check=False)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("tool", ["edge-train", "edge-export", "edge-tradeoff", "edge-train-batch"])
def test_help_of_the_training_commands_needs_no_torch(tool):
    result = run(TRAIN_MODULES, tool, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:") and "Traceback" not in result.stderr


@pytest.mark.parametrize(("tool", "args"), [
    ("edge-train", ["--data", str(DEMO_IMAGES), "--out", "unused"]),
    ("edge-export", [str(DEMO_BUNDLE), "--out", "unused"]),
    ("edge-tradeoff", [str(DEMO_BUNDLE), "--data", str(DEMO_IMAGES), "--work", "unused"]),
    ("edge-train-batch", [str(DEMO_IMAGES), "--out", "unused"]),
])
def test_a_training_command_without_the_train_extra_names_it_in_one_line(tool, args, tmp_path):
    args = [str(tmp_path / a) if a == "unused" else a for a in args]
    line = one_line(run(TRAIN_MODULES, tool, *args))
    assert line.startswith(f"{tool}: error: {tool} needs the 'train' extra (module ")
    assert line.endswith("pip install 'edge-inspect[train]'")


@pytest.mark.parametrize("validate", [True, False], ids=["validate-config", "start"])
def test_a_gentl_config_without_the_camera_extra_is_one_line_at_validation_and_at_start(validate):
    config = REPO / "configs" / "gentl.yaml"
    line = one_line(run("harvesters,genicam", "edge-inspect", "--config", str(config),
                        *(["--validate-config"] if validate else [])))
    assert line == ("edge-inspect: error: camera type gentl needs the 'camera' extra (module harvesters is not "
                    "installed): pip install 'edge-inspect[camera]'")


@pytest.mark.parametrize("validate", [True, False], ids=["validate-config", "start"])
def test_the_openvino_backend_without_its_extra_is_one_line(validate):
    args = ["--camera", "sim", "--bundle", str(DEMO_BUNDLE), "--source", str(DEMO_IMAGES), "--backend", "openvino"]
    line = one_line(run("openvino", "edge-inspect", *args, *(["--validate-config"] if validate else [])))
    assert line.startswith("edge-inspect: error: bundle: the openvino engine (model.onnx) needs the 'openvino' extra")
    assert line.endswith("pip install 'edge-inspect[openvino]'")


def test_the_default_engine_runs_the_demo_without_openvino(tmp_path):
    result = run("openvino", "edge-inspect", "--camera", "sim", "--bundle", str(DEMO_BUNDLE), "--source",
                 str(DEMO_IMAGES / "good"), "--publish", "ipc://" + str(tmp_path / "v"), "--validate-config")
    assert result.returncode == 0 and result.stdout.startswith("config OK"), result.stderr


@pytest.mark.parametrize("validate", [True, False], ids=["validate-config", "start"])
def test_a_broker_config_without_the_broker_extra_is_one_line_at_validation_and_at_start(validate):
    config = REPO / "configs" / "broker.yaml"
    line = one_line(run("paho,confluent_kafka", "edge-inspect", "--config", str(config),
                        *(["--validate-config"] if validate else [])))
    assert line.startswith("edge-inspect: config error: ") and "outputs.broker.mqtt needs the 'broker' extra" in line
    assert line.endswith("pip install 'edge-inspect[broker]'")
