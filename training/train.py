"""Fitting PatchCore on a folder of good images and reading the resulting run back.

A run directory is what export starts from: ``model.pt`` holds the config, the input spec and the
full state dict (backbone weights and memory bank, so loading needs no weights cache), and
``run.yaml`` records how the run was made (data, split, seed, device, timings, versions) so that a
bundle on a line can be traced back to the exact images behind its memory bank.
"""

from __future__ import annotations

import importlib.metadata
import io
import logging
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from edge.model.preprocess import InputSpec
from edge.ops.atomicfile import write_atomic
from training.backbones import BACKBONES
from training.coreset import CoresetSampler
from training.data import list_train_images, split_train_validation
from training.embedding import DEFAULT_BATCH_SIZE, iter_embeddings, memory_bank
from training.inputs import InputRule
from training.patchcore import PatchCore, PatchCoreConfig
from training.scorer import fit_map_scale
from training.smoothing import choose_sigma
from training.tune import TuneOptions, settle

log = logging.getLogger(__name__)

RUN_FORMAT = 1
MODEL_FILE = "model.pt"
RUN_FILE = "run.yaml"


class RunError(RuntimeError):
    """A run directory is missing, incomplete or unreadable."""


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but torch sees no CUDA GPU")
    return torch.device(device)


def input_spec_for(config: PatchCoreConfig) -> InputSpec:
    """The pixel preparation the backbone was pretrained with, at the config's input size."""
    info = BACKBONES[config.backbone]
    height, width = config.input_size
    spec = InputSpec(height=height, width=width, mean=info.mean, std=info.std)
    spec.check()
    return spec


def fit(
    data_dir: str | Path,
    out_dir: str | Path,
    config: PatchCoreConfig | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_images: int | None = None,
    progress: bool = True,
    input_rule: InputRule | None = None,
    tune_options: TuneOptions | None = None,
    choose_smoothing: bool = False,
) -> Path:
    """Fit PatchCore on ``data_dir/train/good`` and write ``model.pt`` and ``run.yaml`` to ``out_dir``.

    The validation images set aside by the seeded split never enter the memory bank.
    ``max_images`` caps how many of the remaining images are used (for quick runs).
    ``input_rule`` lets the input size and resize rule be chosen from the images
    (:mod:`training.inputs`; None: the config's size, stretched), ``tune_options`` picks the settings
    by synthetic defects under a latency budget (:mod:`training.tune`), ``choose_smoothing`` picks
    the map's smoothing on the validation split with synthetic defects (:mod:`training.smoothing`;
    otherwise the config's sigma is kept). Returns ``out_dir``.
    """
    config = (config or PatchCoreConfig()).resolved()
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    torch_device = resolve_device(device)
    timings: dict[str, float] = {"startup": process_age()}
    started = time.perf_counter()

    data_root = Path(data_dir).expanduser().resolve()
    split = split_train_validation(list_train_images(data_root), val_fraction, seed)
    train_images = split.train[:max_images] if max_images else split.train
    spec = input_spec_for(config)
    records: dict[str, Any] = {}
    if input_rule is not None or tune_options is not None:
        config, spec, records = settle(train_images, config, spec, input_rule or InputRule(), tune_options, seed,
                                       progress)
    model = PatchCore(config).to(torch_device).eval()
    timings["setup"] = time.perf_counter() - started

    sampler = CoresetSampler(config.coreset_ratio, seed=seed)
    bank, bank_seconds = memory_bank(model, train_images, spec, sampler, batch_size, progress)
    detail = bank_seconds.pop("detail")
    timings.update(bank_seconds)
    model.set_memory_bank(bank)
    log.info("memory bank: %s x %s from %s patches", *bank.shape, sampler.rows_seen)
    if choose_smoothing:
        tick = time.perf_counter()
        _, records["smoothing"] = choose_sigma(model, spec, split.validation, seed)
        config = model.config
        timings["smoothing"] = time.perf_counter() - tick
    if config.wide_sigma > 0:  # the validation images are good and never in the bank
        tick = time.perf_counter()
        records["map_scale"] = {"images": fit_map_scale(model, spec, split.validation),
                                "values": [round(float(v), 6) for v in model.map_scale]}
        timings["map_scale"] = time.perf_counter() - tick

    tick = time.perf_counter()
    out = Path(out_dir).expanduser().resolve()
    save_model(out, model, spec)
    timings["save"] = time.perf_counter() - tick

    run = {
        "run_format": RUN_FORMAT,
        "config": config.to_dict(),
        "input_spec": spec.to_dict(),
        "dataset": str(data_root),
        "n_train_images": len(train_images),
        "n_validation_images": len(split.validation),
        "train_images": [str(p) for p in train_images],
        "validation_images": [str(p) for p in split.validation],
        "seed": seed,
        "device": str(torch_device),
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "seconds_detail": detail,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "torchvision": _version("torchvision"),
            "timm": _version("timm"),
        },
        "memory_bank_shape": [int(v) for v in bank.shape],
        **records,
    }
    write_run_yaml(out, run)
    log.info("wrote %s (%s)", out, ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return out


def embed_images(model: PatchCore, paths: list[Path], spec: InputSpec, batch_size: int = DEFAULT_BATCH_SIZE,
                 progress: bool = True) -> torch.Tensor:
    """Patch embeddings ``(windows * h * w, D)`` of the images (CPU), all kept (for studies)."""
    chunks = list(iter_embeddings(model, paths, spec, batch_size, progress))
    return torch.cat([c.reshape(-1, c.shape[-1]) for c in chunks])


def _version(dist: str) -> str:
    """A package's version without importing it (timm alone costs a second of start-up)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def process_age() -> float:
    """Seconds since this process started (interpreter start-up and imports), 0.0 where unknown."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def save_model(out: Path, model: PatchCore, spec: InputSpec) -> Path:
    """Write ``out/model.pt``: config, input spec and the full state dict (bank included)."""
    out.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {"config": model.config.to_dict(), "input_spec": spec.to_dict(), "state_dict": state_dict}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return write_atomic(out / MODEL_FILE, buffer.getvalue())


def write_run_yaml(out: Path, run: dict[str, Any]) -> Path:
    """Write ``out/run.yaml`` atomically and durably."""
    return write_atomic(out / RUN_FILE, yaml.safe_dump(run, sort_keys=False).encode("utf-8"))


def read_run_yaml(run_dir: Path) -> dict[str, Any]:
    """The parsed ``run.yaml`` of ``run_dir``, checked for the run format."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: not a training run (no {RUN_FILE})")
    try:
        run = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunError(f"{path}: cannot parse ({exc})") from exc
    if not isinstance(run, dict) or run.get("run_format") != RUN_FORMAT:
        raise RunError(f"{path}: not a run_format {RUN_FORMAT} file")
    return run


def load_run(run_dir: str | Path) -> tuple[PatchCore, dict[str, Any]]:
    """The fitted model (CPU, eval mode, bank loaded) and the ``run.yaml`` dict of ``run_dir``."""
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: run directory does not exist")
    run = read_run_yaml(run_dir)
    path = run_dir / MODEL_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: no {MODEL_FILE}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(f"{path}: cannot load ({type(exc).__name__}: {exc})") from exc
    if not isinstance(checkpoint, dict) or not {"config", "input_spec", "state_dict"} <= set(checkpoint):
        raise RunError(f"{path}: missing config, input_spec or state_dict")
    try:
        config = PatchCoreConfig.from_saved(checkpoint["config"])
        # The state dict holds the backbone weights too: no pretrained weights needed here.
        model = PatchCore(config, pretrained=False)
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise RunError(f"{path}: does not hold a valid PatchCore model ({exc})") from exc
    if model.memory_bank.numel() == 0:
        raise RunError(f"{path}: memory bank is empty")
    return model.eval(), run
