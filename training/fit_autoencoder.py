"""Training the U-Net autoencoder the way a production trainer does, apart from its torch model.

What users expect from the trainer: a choice of optimiser (Adam, AdamW, SGD) and schedule
(cosine, plateau, step), gradient clipping, early stopping on the loss of the held-out split,
mixed precision on CUDA (never on the CPU), a checkpoint after every epoch that ``--resume``
continues from (same data, same settings, same random stream), augmentation, a progress bar per
epoch and a loss-curve PNG in the run directory. The best epoch by validation loss is what goes
into ``model.pt``.

The held-out split is the same seeded validation split every family sets aside: it never trains
the weights, it only picks the epoch, and calibration later scores it. Images are preprocessed
once through :mod:`edge.model.preprocess` (the bundle's input rule maps pixels to [-1, 1]) and kept
as one tensor on the training device, which at 128x128 is a few hundred MB at most.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edge.model.imageio import read_image
from edge.model.preprocess import InputSpec
from training.ae_loss import CombinedLoss, LossWeights, build_perceptual
from training.augment import Augmentation, augment, hide_cells
from training.autoencoder_state import Checkpoint, load_checkpoint, save_checkpoint
from training.configdict import known_keys
from training.data import DatasetError, list_train_images, load_input, split_train_validation
from training.families.autoencoder import (
    ARCHITECTURE,
    INPUT_MEAN,
    INPUT_STD,
    AutoencoderConfig,
    AutoencoderDetector,
    count_parameters,
)
from training.plots import write_loss_curve
from training.runs import TrainRequest, run_record, save_checkpoint_model
from training.train import resolve_device, write_run_yaml

log = logging.getLogger(__name__)

__all__ = ["ARCHITECTURE", "CONFIG_KEYS", "TRAIN_KEYS", "TrainerConfig", "build", "fit"]

FAMILY = "autoencoder"
LOSS_CURVE_FILE = "loss_curve.png"
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "plateau", "step", "none")
AMP_MODES = ("auto", "on", "off")
CONFIG_KEYS: tuple[str, ...] = tuple(AutoencoderConfig.__dataclass_fields__)
# map_norm: position is a mean over good images; 64 evenly spaced training images estimate it well
# and, at 6 inpainting passes each, cost about 16 s on 2 cores instead of about 45 s for the bottle's 188
MAP_NORM_IMAGES = 64


@dataclass(frozen=True)
class TrainerConfig:
    """How the autoencoder is trained; stored under ``trainer:`` in ``run.yaml`` and the checkpoint.

    ``early_stopping`` is the number of epochs without a validation-loss improvement of at least
    ``min_delta`` (relative) after which training stops (0: off). ``max_minutes`` stops training
    before an epoch that would end past it, judged by the recent epochs' duration (0: no budget),
    so a run keeps to its budget (:func:`epoch_fits`); the cosine schedule anneals over the budget
    (:func:`budget_lr`). ``amp``: ``auto`` uses mixed precision
    on CUDA only, ``on`` demands CUDA, ``off`` never.
    """

    epochs: int = 40
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: str = "cosine"
    step_size: int = 10
    gamma: float = 0.5
    plateau_patience: int = 3
    min_lr: float = 1e-5
    grad_clip: float = 1.0
    early_stopping: int = 10
    min_delta: float = 0.002
    amp: str = "auto"
    max_minutes: float = 0.0
    perceptual_backbone: str = "auto"
    loss: LossWeights = field(default_factory=LossWeights)
    augment: Augmentation = field(default_factory=Augmentation)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"trainer: epochs must be >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"trainer: optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"trainer: scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"trainer: amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.lr <= 0 or self.grad_clip < 0 or self.early_stopping < 0 or self.max_minutes < 0:
            raise ValueError("trainer: lr must be > 0; grad_clip, early_stopping and max_minutes >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainerConfig:
        values = known_keys(data, cls, "autoencoder trainer")
        if isinstance(values.get("loss"), Mapping):
            values["loss"] = LossWeights(**known_keys(values["loss"], LossWeights, "loss"))
        if isinstance(values.get("augment"), Mapping):
            values["augment"] = Augmentation.from_dict(values["augment"])
        return cls(**values)


TRAIN_KEYS: tuple[str, ...] = tuple(TrainerConfig.__dataclass_fields__)


def use_amp(mode: str, device: torch.device) -> bool:
    """Whether to train in mixed precision: only on CUDA (``on`` without CUDA is an error)."""
    if mode == "on" and device.type != "cuda":
        raise ValueError("trainer: amp=on needs a CUDA device (mixed precision is CUDA-only here)")
    return mode != "off" and device.type == "cuda"


def input_spec_for(config: AutoencoderConfig) -> InputSpec:
    """[-1, 1] input: ``(x / 255 - 0.5) / 0.5``, expressed in the bundle's scale/mean/std."""
    spec = InputSpec(height=config.input_size[0], width=config.input_size[1], mean=INPUT_MEAN, std=INPUT_STD)
    spec.check()
    return spec


def is_grayscale_dataset(paths: list[Path], probe: int = 8) -> bool:
    """Whether the data set's images are single-channel files (checked on evenly spaced samples)."""
    step = max(1, len(paths) // probe)
    return all(read_image(p).ndim == 2 for p in paths[::step][:probe])


def load_tensor(paths: list[Path], spec: InputSpec, detector: AutoencoderDetector, device: torch.device,
                progress: bool) -> torch.Tensor:
    """The network inputs ``(N, C, H, W)`` of ``paths`` on ``device`` (gray data sets: one channel)."""
    arrays = [load_input(p, spec) for p in tqdm(paths, desc="loading", unit="img", disable=not progress, leave=False)]
    batch = torch.from_numpy(np.concatenate(arrays))
    return detector.network_input(batch).contiguous().to(device)


def make_optimizer(trainer: TrainerConfig, params: Any) -> torch.optim.Optimizer:
    if trainer.optimizer == "adam":
        return torch.optim.Adam(params, lr=trainer.lr, weight_decay=trainer.weight_decay)
    if trainer.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=trainer.lr, weight_decay=trainer.weight_decay)
    return torch.optim.SGD(params, lr=trainer.lr, momentum=trainer.momentum, weight_decay=trainer.weight_decay,
                           nesterov=trainer.momentum > 0)


def make_scheduler(trainer: TrainerConfig, optimizer: torch.optim.Optimizer) -> Any:
    """The epoch-level schedule (``plateau`` steps on the validation loss), or None."""
    if trainer.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=trainer.epochs, eta_min=trainer.min_lr)
    if trainer.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=trainer.step_size, gamma=trainer.gamma)
    if trainer.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=trainer.gamma,
                                                          patience=trainer.plateau_patience, min_lr=trainer.min_lr)
    return None


def budget_lr(trainer: TrainerConfig, epochs_done: int, elapsed_s: float) -> float | None:
    """The cosine rate for the next epoch under a time budget (None without one, or another schedule).

    With ``max_minutes`` the run may stop long before ``epochs``; an epoch-indexed cosine would be
    cut off at a high rate. So the cosine follows whichever runs out first, epochs or minutes:
    ``progress = max(epochs done / epochs, elapsed / budget)``, and the last epoch the budget
    allows is trained near ``min_lr`` as it would be at the end of a full run.
    """
    if trainer.scheduler != "cosine" or not trainer.max_minutes:
        return None
    progress = min(1.0, max(epochs_done / trainer.epochs, elapsed_s / (60.0 * trainer.max_minutes)))
    return trainer.min_lr + (trainer.lr - trainer.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_fits(trainer: TrainerConfig, history: list[dict[str, Any]], elapsed_s: float) -> bool:
    """Whether one more epoch ends within ``max_minutes``, if it lasts as long as the last three did.

    Checking only that the budget is not yet spent would let the last epoch run past it by a whole
    epoch (half a minute for the bottle preset on 2 cores); the slowest of the recent epochs is the
    estimate, so a load that comes and goes errs on the side of the budget.
    """
    if not trainer.max_minutes:
        return True
    expected = max((float(h["seconds"]) for h in history[-3:]), default=0.0)
    return elapsed_s + expected <= 60.0 * trainer.max_minutes


def _batches(count: int, batch_size: int, order: torch.Tensor) -> list[torch.Tensor]:
    """Index batches; a last batch of one image joins the previous one (batch norm needs two)."""
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        chunks[-2] = torch.cat(chunks[-2:])
        chunks.pop()
    return chunks


class Trainer:
    """One training run: the network, loss, optimiser, schedule, scaler and the progress so far."""

    def __init__(self, detector: AutoencoderDetector, trainer: TrainerConfig, device: torch.device, seed: int,
                 perceptual: nn.Module | None) -> None:
        self.detector = detector
        # channels-last convolutions train about 15 % faster on this CPU (oneDNN) and are the fast path
        # for AMP on CUDA; the weights saved are the same tensors whatever their memory layout
        self.network = detector.network.to(memory_format=torch.channels_last)
        self.trainer = trainer
        self.device = device
        self.amp = use_amp(trainer.amp, device)
        self.loss = CombinedLoss(trainer.loss, perceptual).to(device)  # type: ignore[arg-type]
        self.optimizer = make_optimizer(trainer, self.network.parameters())
        self.scheduler = make_scheduler(trainer, self.optimizer)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.generator = torch.Generator().manual_seed(seed)
        self.state = Checkpoint()

    def train_epoch(self, data: torch.Tensor, progress: bool, epoch: int) -> dict[str, float]:
        self.network.train()
        self.loss.train()
        order = torch.randperm(int(data.shape[0]), generator=self.generator)
        batches = _batches(int(data.shape[0]), self.trainer.batch_size, order)
        totals: dict[str, float] = {}
        seen = 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{self.trainer.epochs}", unit="batch", disable=not progress,
                   leave=False)
        for index in bar:
            source, target = augment(data[index.to(data.device)], self.trainer.augment, self.generator)
            config = self.detector.config
            if config.inpaint_cells:
                source = hide_cells(source, config.inpaint_cells, config.inpaint_sets, self.generator)
            source = source.contiguous(memory_format=torch.channels_last)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
                reconstruction = self.network(source)
            loss, terms = self.loss(reconstruction, target)
            self.scaler.scale(loss).backward()
            if self.trainer.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.network.parameters(), self.trainer.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = int(index.numel())
            seen += n
            for name, value in {"loss": float(loss.detach()), **terms}.items():
                totals[name] = totals.get(name, 0.0) + value * n
            bar.set_postfix(loss=f"{totals['loss'] / seen:.4f}")
        return {name: value / seen for name, value in totals.items()}

    def validation_loss(self, data: torch.Tensor) -> float:
        self.network.eval()
        total, seen = 0.0, 0
        with torch.no_grad():
            for batch in data.split(self.trainer.batch_size):
                with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
                    reconstruction = self.detector.reconstruct(batch)
                loss, _ = self.loss(reconstruction, batch)
                total += float(loss) * int(batch.shape[0])
                seen += int(batch.shape[0])
        return total / seen

    def step_schedule(self, val_loss: float) -> None:
        """Set the next epoch's rate (after ``state`` counts the epoch just trained)."""
        rate = budget_lr(self.trainer, self.state.epoch, self.state.elapsed_s)
        if rate is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        elif isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        elif self.scheduler is not None:
            self.scheduler.step()

    def improved(self, val_loss: float) -> bool:
        best = self.state.best_val
        return not math.isfinite(best) or val_loss < best * (1.0 - self.trainer.min_delta)

    def run(self, train_x: torch.Tensor, val_x: torch.Tensor, out: Path, identity: dict[str, Any],
            progress: bool) -> str:
        """Train until the epochs, early stopping or the time budget end it; return why it stopped."""
        state = self.state
        while state.epoch < self.trainer.epochs:
            if not epoch_fits(self.trainer, state.history, state.elapsed_s):
                return f"time budget of {self.trainer.max_minutes:g} min reached"
            tick = time.perf_counter()
            epoch = state.epoch + 1
            terms = self.train_epoch(train_x, progress, epoch)
            val_loss = self.validation_loss(val_x)
            lr = float(self.optimizer.param_groups[0]["lr"])
            seconds = time.perf_counter() - tick
            state.elapsed_s += seconds
            state.epoch = epoch
            self.step_schedule(val_loss)
            state.history.append({"epoch": epoch, "train_loss": terms.pop("loss"), "val_loss": val_loss,
                                  "terms": terms, "lr": lr, "seconds": round(seconds, 2)})
            if self.improved(val_loss):
                state.best_val, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
                state.best_state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}
            else:
                state.bad_epochs += 1
            save_checkpoint(out, self, identity)
            write_loss_curve(out / LOSS_CURVE_FILE, {"train": [h["train_loss"] for h in state.history],
                                                     "validation": [h["val_loss"] for h in state.history]},
                             f"autoencoder loss ({identity['dataset']})", state.best_epoch)
            log.info("epoch %s: train %.4f, validation %.4f (best %.4f at %s), lr %.2g, %.1f s; checkpoint written",
                     epoch, state.history[-1]["train_loss"], val_loss, state.best_val, state.best_epoch, lr, seconds)
            if self.trainer.early_stopping and state.bad_epochs >= self.trainer.early_stopping:
                return f"early stopping: no validation improvement for {state.bad_epochs} epochs"
        return f"{self.trainer.epochs} epochs done"


def fit(request: TrainRequest) -> Path:
    """Train the autoencoder on ``request.data_dir/train/good``; write ``model.pt`` and ``run.yaml``."""
    trainer = TrainerConfig.from_dict(request.train)
    if request.batch_size:
        trainer = replace(trainer, batch_size=request.batch_size)
    device = resolve_device(request.device)
    use_amp(trainer.amp, device)  # refuse amp=on without CUDA before any work
    data_root = Path(request.data_dir).expanduser().resolve()
    split = split_train_validation(list_train_images(data_root), request.val_fraction, request.seed)
    train_images = split.train[: request.max_images] if request.max_images else split.train
    if len(train_images) < 2:
        raise DatasetError(f"the autoencoder needs at least 2 training images, got {len(train_images)}")
    values = dict(request.config)
    grayscale = is_grayscale_dataset(train_images)
    if "in_channels" not in values:
        values["in_channels"] = 1 if grayscale else 3
    config = AutoencoderConfig.from_dict(values)
    spec = input_spec_for(config)
    out = Path(request.out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(request.seed)
    detector = AutoencoderDetector(config).to(device)
    perceptual, perceptual_record = (build_perceptual(trainer.perceptual_backbone) if trainer.loss.perceptual
                                     else (None, None))
    loop = Trainer(detector, trainer, device, request.seed, perceptual)
    identity = {"dataset": str(data_root), "config": config.to_dict(), "trainer": trainer.to_dict(),
                "train_images": [str(p) for p in train_images], "seed": request.seed}
    resumed = load_checkpoint(out, loop, identity, request.resume)
    train_x = load_tensor(train_images, spec, detector, device, request.progress)
    val_x = load_tensor(split.validation, spec, detector, device, request.progress)
    log.info("autoencoder: %s parameters, %s training / %s validation images at %sx%s, %s channel(s), device %s, "
             "amp %s", count_parameters(detector.network), len(train_images), len(split.validation),
             *config.input_size, config.in_channels, device, loop.amp)
    stopped = loop.run(train_x, val_x, out, identity, request.progress)
    if loop.state.best_state is None:
        raise RuntimeError("training produced no epoch to keep")
    detector.network.load_state_dict(loop.state.best_state)
    detector.eval()
    seconds = {"training": round(loop.state.elapsed_s, 2)}
    if config.map_norm == "position":
        tick = time.perf_counter()
        sample = train_x[:: max(1, int(train_x.shape[0]) // MAP_NORM_IMAGES)][:MAP_NORM_IMAGES]
        detector.fit_position_scale(sample, trainer.batch_size)
        seconds["map_norm"] = round(time.perf_counter() - tick, 2)
        log.info("autoencoder: map_norm position fitted on %s training images in %.1f s", int(sample.shape[0]),
                 seconds["map_norm"])

    save_checkpoint_model(out, FAMILY, config.to_dict(), spec, detector)
    run = run_record(FAMILY, config.to_dict(), spec, data_root, train_images, split, request.seed, device)
    run.update({
        "architecture": ARCHITECTURE,
        "parameters": count_parameters(detector.network),
        "grayscale": {"dataset_is_grayscale": grayscale, "in_channels": config.in_channels,
                      "rule": "in_channels 1: the graph averages the replicated RGB channels of a gray frame"},
        "trainer": {**trainer.to_dict(), "amp_used": loop.amp, "perceptual": perceptual_record,
                    "stopped": stopped, "epochs_run": loop.state.epoch, "best_epoch": loop.state.best_epoch,
                    "best_val_loss": loop.state.best_val, "resumed_from_epoch": resumed,
                    "loss_curve": LOSS_CURVE_FILE},
        "history": loop.state.history,
        "seconds": seconds,
    })
    write_run_yaml(out, run)
    log.info("autoencoder: %s; best epoch %s (validation %.4f)", stopped, loop.state.best_epoch, loop.state.best_val)
    return out


def build(config: Mapping[str, Any]) -> AutoencoderDetector:
    """The model of a saved run (weights come from the state dict).

    A run's ``config`` lists every field; one without ``inpaint_cells`` was written before
    inpainting existed, was trained for one plain pass, and is rebuilt so; one without
    ``gms_weight`` was written before the gradient-similarity map term, and its map has none.
    """
    if "inpaint_cells" not in config:
        config = {**config, "inpaint_cells": []}
    if "gms_weight" not in config:
        config = {**config, "gms_weight": 0.0}
    return AutoencoderDetector(AutoencoderConfig.from_dict(config))
