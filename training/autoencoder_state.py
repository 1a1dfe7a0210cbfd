"""The autoencoder trainer's checkpoint: what ``edge-train --resume`` needs to continue a run exactly.

Written after every epoch, atomically, into the run directory (``checkpoint.pt``): the network,
optimiser, schedule and gradient-scaler states, the random streams, the loss history, the best
epoch so far and its weights, and the identity of the run (data set, training images, model and
trainer settings, seed). Resuming with anything different would silently mix two runs, so a
mismatch is refused naming the field; so is starting afresh over a checkpoint without
``--resume``, which would throw away the interrupted run's epochs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from training.runs import save_torch_atomic

if TYPE_CHECKING:
    from training.fit_autoencoder import Trainer

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


@dataclass
class Checkpoint:
    """Progress of a run: epochs done, history, the best epoch, and the training seconds so far."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    elapsed_s: float = 0.0
    best_state: dict[str, torch.Tensor] | None = None


def save_checkpoint(out: Path, trainer: Trainer, identity: dict[str, Any]) -> Path:
    """Write ``out/checkpoint.pt`` for the trainer's current state."""
    state = trainer.state
    payload = {
        "format": CHECKPOINT_FORMAT,
        "identity": identity,
        "progress": {"epoch": state.epoch, "history": state.history, "best_val": state.best_val,
                     "best_epoch": state.best_epoch, "bad_epochs": state.bad_epochs, "elapsed_s": state.elapsed_s},
        "best_state": state.best_state,
        "network": {k: v.detach().cpu() for k, v in trainer.network.state_dict().items()},
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "scaler": trainer.scaler.state_dict(),
        "generator": trainer.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    return save_torch_atomic(out / CHECKPOINT_FILE, payload)


def load_checkpoint(out: Path, trainer: Trainer, identity: dict[str, Any], resume: bool) -> int | None:
    """Restore the trainer from ``out/checkpoint.pt`` when resuming; return the epoch resumed from.

    Without ``resume`` an existing checkpoint is an error (its epochs would be lost), and with
    ``resume`` a missing one is.
    """
    path = out / CHECKPOINT_FILE
    if not resume:
        if path.exists():
            raise ValueError(f"{path}: a checkpoint of an earlier run is here; pass --resume to continue it "
                             "or choose another --out")
        return None
    if not path.is_file():
        raise ValueError(f"{path}: nothing to resume (no checkpoint)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling a damaged file can raise almost anything
        raise ValueError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a format {CHECKPOINT_FORMAT} autoencoder checkpoint")
    saved = payload["identity"]
    for key, value in identity.items():
        if saved.get(key) != value:
            raise ValueError(f"{path}: cannot resume, {key} differs from the interrupted run's")
    trainer.network.load_state_dict(payload["network"])
    trainer.optimizer.load_state_dict(payload["optimizer"])
    if trainer.scheduler is not None and payload["scheduler"] is not None:
        trainer.scheduler.load_state_dict(payload["scheduler"])
    trainer.scaler.load_state_dict(payload["scaler"])
    trainer.generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    progress = payload["progress"]
    trainer.state = Checkpoint(epoch=int(progress["epoch"]), history=list(progress["history"]),
                               best_val=float(progress["best_val"]), best_epoch=int(progress["best_epoch"]),
                               bad_epochs=int(progress["bad_epochs"]), elapsed_s=float(progress["elapsed_s"]),
                               best_state=payload["best_state"])
    log.info("resuming %s after epoch %s", out, trainer.state.epoch)
    return trainer.state.epoch
