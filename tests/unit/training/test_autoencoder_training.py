"""The autoencoder trainer: a run directory with curve and checkpoint, CPU-only AMP rules, resume after a kill."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
import yaml

from training.augment import Augmentation, augment, hide_cells
from training.families.autoencoder import AutoencoderDetector
from training.families.registry import load_run, train
from training.fit_autoencoder import TrainerConfig, budget_lr, epoch_fits, make_scheduler, use_amp
from training.runs import TrainRequest

REPO = Path(__file__).resolve().parents[3]
TINY = {"input_size": [32, 32], "widths": [4, 8, 16], "bottleneck": 16}
FAST = {"epochs": 2, "batch_size": 4, "loss": {"perceptual": 0.0}}


def test_training_writes_model_run_record_loss_curve_and_checkpoint(bottle: Path, tmp_path: Path) -> None:
    request = TrainRequest(data_dir=bottle, out_dir=tmp_path / "run", config=TINY, train=FAST, device="cpu",
                           max_images=6, progress=False)
    out, _ = train("autoencoder", request)
    assert {"model.pt", "run.yaml", "checkpoint.pt", "loss_curve.png"} <= {p.name for p in out.iterdir()}
    curve = cv2.imread(str(out / "loss_curve.png"))
    assert curve is not None and curve.shape[2] == 3
    model, run = load_run(out)
    assert isinstance(model, AutoencoderDetector) and not model.training
    assert run["family"] == "autoencoder" and run["trainer"]["epochs_run"] == 2
    assert run["trainer"]["amp_used"] is False and run["trainer"]["resumed_from_epoch"] is None
    assert [h["epoch"] for h in run["history"]] == [1, 2]
    assert 1 <= run["trainer"]["best_epoch"] <= 2
    assert run["input_spec"]["mean"] == [0.5, 0.5, 0.5] and run["input_spec"]["std"] == [0.5, 0.5, 0.5]
    assert run["grayscale"]["in_channels"] == 3
    with pytest.raises(ValueError, match="--resume"):
        train("autoencoder", request)


def test_grayscale_dataset_is_detected_and_trained_on_one_channel(magnetic_tile: Path, tmp_path: Path) -> None:
    request = TrainRequest(data_dir=magnetic_tile, out_dir=tmp_path / "tile", config=TINY,
                           train={**FAST, "epochs": 1}, device="cpu", max_images=4, progress=False)
    out, _ = train("autoencoder", request)
    model, run = load_run(out)
    assert run["grayscale"] == {"dataset_is_grayscale": True, "in_channels": 1,
                                "rule": run["grayscale"]["rule"]}
    assert model.config.in_channels == 1


def test_mixed_precision_is_used_on_cuda_only() -> None:
    cpu = torch.device("cpu")
    assert use_amp("auto", cpu) is False and use_amp("off", cpu) is False
    with pytest.raises(ValueError, match="CUDA"):
        use_amp("on", cpu)
    cuda = torch.device("cuda")
    assert use_amp("auto", cuda) is True and use_amp("on", cuda) is True and use_amp("off", cuda) is False


def test_schedules_and_optimisers_are_built_from_the_trainer_settings() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=0.1)
    assert isinstance(make_scheduler(TrainerConfig(scheduler="cosine"), optimizer),
                      torch.optim.lr_scheduler.CosineAnnealingLR)
    assert isinstance(make_scheduler(TrainerConfig(scheduler="plateau"), optimizer),
                      torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert make_scheduler(TrainerConfig(scheduler="none"), optimizer) is None
    with pytest.raises(ValueError, match="optimizer"):
        TrainerConfig(optimizer="lbfgs")
    nested = TrainerConfig.from_dict({"loss": {"ssim": 0.25}, "augment": {"rotation": 10}})
    assert nested.loss.ssim == 0.25 and nested.augment.rotation == 10
    with pytest.raises(ValueError, match="unknown keys"):
        TrainerConfig.from_dict({"loss": {"ssimm": 1}})


def test_a_time_budget_anneals_the_cosine_schedule_over_the_minutes_or_the_epochs_whichever_ends_first() -> None:
    budget = TrainerConfig(epochs=20, lr=1e-3, min_lr=1e-5, max_minutes=10.0)
    assert budget_lr(budget, 0, 0.0) == pytest.approx(1e-3)
    assert budget_lr(budget, 1, 300.0) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # half the minutes spent
    assert budget_lr(budget, 15, 150.0) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(0.75 * math.pi)))
    assert budget_lr(budget, 3, 900.0) == pytest.approx(1e-5)  # past the budget: the floor
    assert budget_lr(TrainerConfig(epochs=20), 1, 300.0) is None  # no budget: the epoch schedule
    assert budget_lr(TrainerConfig(scheduler="step", max_minutes=10.0), 1, 300.0) is None


def test_the_budget_refuses_an_epoch_that_would_end_past_it_judged_by_the_slowest_recent_epoch() -> None:
    budget = TrainerConfig(epochs=40, max_minutes=10.0)
    history = [{"seconds": s} for s in (40.0, 25.0, 30.0, 26.0)]  # the first (slow) epoch is no longer recent
    assert epoch_fits(budget, [], 599.0)  # nothing measured yet: the first epoch always runs
    assert epoch_fits(budget, history, 570.0)  # 570 + 30 ends on the budget
    assert not epoch_fits(budget, history, 571.0)  # would end past it, though 29 s are left
    assert epoch_fits(TrainerConfig(epochs=40), history, 10_000.0)  # no budget


def test_augmentation_changes_input_and_target_alike_except_noise() -> None:
    batch = torch.rand(4, 3, 16, 16) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    source, target = augment(batch, Augmentation(), generator)
    assert source is batch and target is batch
    source, target = augment(batch, Augmentation(hflip=True, rotation=20, brightness=0.1), generator)
    assert torch.equal(source, target) and not torch.equal(target, batch)
    source, target = augment(batch, Augmentation(noise=0.1), generator)
    assert torch.equal(target, batch) and not torch.equal(source, batch)


def test_hidden_cells_are_whole_cells_set_to_mid_grey_about_one_set_in_three() -> None:
    batch = torch.rand(8, 3, 32, 32) * 0.5 + 0.25  # never exactly 0, so 0 means hidden
    hidden = hide_cells(batch, (4, 8), 3, torch.Generator().manual_seed(0)) == 0
    assert torch.equal(hidden[:, :1].expand_as(hidden), hidden)  # all channels of a pixel together
    fractions = hidden[:, 0].float().mean(dim=(1, 2))
    assert 0.15 < float(fractions.mean()) < 0.5
    for image in hidden[:, 0]:
        cells = image.unfold(0, 4, 4).unfold(1, 4, 4).flatten(2).float()  # every 4x4 cell all or nothing
        assert torch.all((cells.mean(dim=-1) == 0) | (cells.mean(dim=-1) == 1))


def _wait_for_line(process: subprocess.Popen, marker: str) -> None:
    """Read the trainer's log until ``marker`` appears (it is logged once the checkpoint is on disk)."""
    assert process.stdout is not None
    for line in process.stdout:
        if marker in line:
            return
    raise AssertionError(f"trainer ended (exit {process.wait()}) without logging {marker!r}")


def test_a_run_killed_mid_training_resumes_from_its_checkpoint_and_finishes(bottle: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "training.cli", "--model", "autoencoder", "--data", str(bottle),
               "--out", str(out), "--device", "cpu", "--max-images", "6",
               "--set", "input_size=[32,32]", "--set", "widths=[4,8,16]", "--set", "bottleneck=16",
               "--set", "epochs=60", "--set", "batch_size=2", "--set", "loss.perceptual=0", "--set", "early_stopping=0"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        _wait_for_line(process, "epoch 1: ")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert not (out / "model.pt").exists()
    killed_at = torch.load(out / "checkpoint.pt", weights_only=True)["progress"]["epoch"]
    assert 1 <= killed_at < 60

    refused = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = subprocess.run([*command, "--resume"], cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert run["trainer"]["resumed_from_epoch"] >= killed_at
    assert [h["epoch"] for h in run["history"]] == list(range(1, 61))
