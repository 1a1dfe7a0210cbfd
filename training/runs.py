"""What every model family shares about a run: the request, the run record, the checkpoint, the cost.

A run directory is the contract between training and export whatever the family: ``model.pt``
holds ``family``, ``config``, ``input_spec`` and the full state dict; ``run.yaml`` records the data,
the seeded split, the device, the timings and the versions (:mod:`training.train` defines the
format and the atomic writers, which PatchCore uses as it always did). This module holds the parts
the newer families reuse instead of copying them, and the measurement of what a fit cost on this
machine (wall and CPU seconds, peak RSS), which ``run.yaml`` records for every family because a
shared, loaded machine makes wall time alone misleading.
"""

from __future__ import annotations

import io
import logging
import platform
import resource
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision

from edge.model.preprocess import InputSpec
from edge.ops.atomicfile import write_atomic
from training.data import TrainSplit
from training.train import MODEL_FILE, RUN_FORMAT, RunError, read_run_yaml, write_run_yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    """One training job as the command line or the batch runner asks for it.

    ``config`` overrides fields of the family's model config, ``train`` fields of its trainer
    settings (families without a trainer refuse any). ``resume`` continues an interrupted run
    from its checkpoint where the family supports it.
    """

    data_dir: Path
    out_dir: Path
    config: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    batch_size: int | None = None
    max_images: int | None = None
    progress: bool = True
    resume: bool = False
    preset: str | None = None


@dataclass
class Resources:
    """Wall and CPU seconds (user + sys, all threads) and peak RSS of this process over a block."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    load_avg_1m: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall_s, 2), "cpu_s": round(self.cpu_s, 2),
                "peak_rss_mb": round(self.peak_rss_mb, 1),
                "load_avg_1m": {"start": self.load_avg_1m[0], "end": self.load_avg_1m[-1]} if self.load_avg_1m
                else None}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load_1m() -> float:
    try:
        return round(float(Path("/proc/loadavg").read_text().split()[0]), 2)
    except (OSError, ValueError, IndexError):
        return float("nan")


@contextmanager
def measure() -> Iterator[Resources]:
    """Measure the enclosed block; peak RSS is the process's high-water mark (Linux: kB)."""
    result = Resources(load_avg_1m=[_load_1m()])
    wall, cpu = time.perf_counter(), _cpu_seconds()
    try:
        yield result
    finally:
        result.wall_s = time.perf_counter() - wall
        result.cpu_s = _cpu_seconds() - cpu
        result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        result.load_avg_1m.append(_load_1m())


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__)}


def run_record(family: str, config: Mapping[str, Any], spec: InputSpec, data_root: Path, train_images: list[Path],
               split: TrainSplit, seed: int, device: torch.device) -> dict[str, Any]:
    """The fields of ``run.yaml`` every family writes (export and calibration read these)."""
    return {
        "run_format": RUN_FORMAT,
        "family": family,
        "config": dict(config),
        "input_spec": spec.to_dict(),
        "dataset": str(data_root),
        "n_train_images": len(train_images),
        "n_validation_images": len(split.validation),
        "train_images": [str(p) for p in train_images],
        "validation_images": [str(p) for p in split.validation],
        "seed": seed,
        "device": str(device),
        "versions": versions(),
    }


def save_checkpoint_model(out: Path, family: str, config: Mapping[str, Any], spec: InputSpec,
                          model: torch.nn.Module) -> Path:
    """Write ``out/model.pt`` (family, config, input spec, CPU state dict) atomically."""
    out.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {"family": family, "config": dict(config), "input_spec": spec.to_dict(), "state_dict": state_dict}
    return save_torch_atomic(out / MODEL_FILE, checkpoint)


def save_torch_atomic(path: Path, obj: Any) -> Path:
    """``torch.save`` through :func:`edge.ops.atomicfile.write_atomic`: a crash leaves the old file or the new."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_atomic(path, buffer.getvalue())


def load_checkpoint_model(
    run_dir: Path, family: str, build: Callable[[Mapping[str, Any]], torch.nn.Module]
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model of a ``family`` run (CPU, eval mode) rebuilt by ``build(config)`` and its ``run.yaml``."""
    run = read_run_yaml(run_dir)
    path = run_dir / MODEL_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: no {MODEL_FILE}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling a damaged file can raise almost anything
        raise RunError(f"{path}: cannot load ({type(exc).__name__}: {exc})") from exc
    if not isinstance(checkpoint, dict) or not {"family", "config", "input_spec", "state_dict"} <= set(checkpoint):
        raise RunError(f"{path}: missing family, config, input_spec or state_dict")
    if checkpoint["family"] != family:
        raise RunError(f"{path}: holds a {checkpoint['family']} model, run.yaml says {family}")
    try:
        model = build(checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        raise RunError(f"{path}: does not hold a valid {family} model ({exc})") from exc
    return model.eval(), run


def record_in_run(out: Path, updates: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``updates`` to ``out/run.yaml`` (atomically) and return the new record."""
    run = read_run_yaml(out)
    run.update(updates)
    write_run_yaml(out, run)
    return run
