"""Patch embeddings of many training images, fast, streamed straight into the coreset sampler.

Where the time went before (bottle, 188 images at 256 px, 2-core development machine): the eager
mobilenet_v2 trunk ran at 25-28 ms per image in batches of 8, because depthwise convolutions in
torch's default NCHW layout with unfused batch norms are slow on CPU and larger batches fall out of
cache (batch 1 was faster than batch 8). Traced, frozen (batch norm folded into the convolutions,
activations fused) and run channels-last in batches of 4, the same trunk takes about 4 ms per
image; the aggregation (average pool, upsampling, concatenation) rides along in the traced graph
and, channels-last, the rows come out without a transposing copy. Decoding stays in the calling
thread: a decoder thread beside torch's two made no difference on two cores. The frozen graph is used
for the memory bank only; the eager model is what gets saved and exported, and the scores it
gives agree with the bank to float rounding (checked by export's parity test on held-out images).
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edge.model.preprocess import InputSpec
from training.coreset import CoresetSampler
from training.data import load_windows
from training.patchcore import PatchCore

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 4  # windows per forward pass: 4 ms per image at 2-4, 6 ms at 8 (cache)


@dataclass
class EmbeddingTimes:
    """Where the embedding seconds went."""

    decode: float = 0.0
    preprocess: float = 0.0
    features: float = 0.0
    wall: float = 0.0
    images: int = 0
    windows: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float]:
        return {"decode": round(self.decode, 3), "preprocess": round(self.preprocess, 3),
                "features": round(self.features, 3), "wall": round(self.wall, 3), "images": self.images,
                "windows": self.windows}


class _PerImage(nn.Module):
    """``PatchCore.embed_per_image`` as a module of its own, for tracing."""

    def __init__(self, model: PatchCore) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed_per_image(x)


def embedder_for(model: PatchCore, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``(B, 3, H, W) -> (B, h * w, D)`` computing ``model.embed_per_image`` fast.

    On CPU a traced and frozen channels-last copy of the model (the model itself is left as it
    is); on other devices the model's own method. Tracing falls back to eager, with a warning,
    for a trunk that cannot be traced.
    """
    if example.device.type != "cpu":
        return model.embed_per_image
    module = copy.deepcopy(_PerImage(model)).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    example = example.contiguous(memory_format=torch.channels_last)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.freeze(torch.jit.trace(module, example))
            traced(example)
    except (RuntimeError, torch.jit.Error) as exc:  # type: ignore[attr-defined]
        log.warning("cannot trace %s for fast embedding, running eager (%s)", model.config.backbone, exc)
        return model.embed_per_image

    def run(x: torch.Tensor) -> torch.Tensor:
        return traced(x.contiguous(memory_format=torch.channels_last))  # type: ignore[no-any-return]

    return run


def iter_window_batches(paths: Sequence[Path], spec: InputSpec, batch_size: int,
                        times: EmbeddingTimes) -> Iterator[np.ndarray]:
    """``(B, 3, H, W)`` batches of every image's windows, in order (the last batch may be smaller)."""
    pending: list[np.ndarray] = []
    rows = 0
    for path in paths:
        windows, decode_s, preprocess_s = load_windows(path, spec)
        times.decode += decode_s
        times.preprocess += preprocess_s
        times.images += 1
        times.windows += len(windows)
        pending.append(windows)
        rows += len(windows)
        while rows >= batch_size:
            stacked = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield stacked[:batch_size]
            pending = [stacked[batch_size:]] if rows > batch_size else []
            rows -= batch_size
    if rows:
        yield np.concatenate(pending)


def iter_embeddings(model: PatchCore, paths: Sequence[Path], spec: InputSpec, batch_size: int = DEFAULT_BATCH_SIZE,
                    progress: bool = True, times: EmbeddingTimes | None = None) -> Iterator[torch.Tensor]:
    """Patch embeddings ``(B, h * w, D)`` (CPU, float32) of every window of ``paths``, batch by batch."""
    times = times if times is not None else EmbeddingTimes()
    device = model.blur_kernel.device
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None
    started = time.perf_counter()
    bar = tqdm(total=len(paths), desc="embedding", unit="img", disable=not progress)
    with torch.no_grad():
        for batch in iter_window_batches(paths, spec, batch_size, times):
            tick = time.perf_counter()
            x = torch.from_numpy(batch).to(device)
            if embed is None:
                embed = embedder_for(model, x)
            rows = embed(x).to("cpu", torch.float32)
            times.features += time.perf_counter() - tick
            bar.update(times.images - bar.n)
            yield rows
    bar.close()
    times.wall += time.perf_counter() - started


def memory_bank(model: PatchCore, paths: Sequence[Path], spec: InputSpec, sampler: CoresetSampler,
                batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """Embed ``paths`` into ``sampler`` and return the memory bank and the seconds per step.

    ``embedding`` is the wall time of the embedding loop without the coreset preselection that runs
    inside it; ``coreset`` is the preselection plus the final selection.
    """
    times = EmbeddingTimes()
    for rows in iter_embeddings(model, paths, spec, batch_size, progress, times):
        sampler.add(rows)
    bank = sampler.finish(progress=progress)
    seconds = {
        "embedding": times.wall - sampler.seconds["preselect"],
        "coreset": sampler.seconds["preselect"] + sampler.seconds["select"],
    }
    detail = {**times.to_dict(), "coreset_preselect": round(sampler.seconds["preselect"], 3),
              "coreset_select": round(sampler.seconds["select"], 3), "coreset_candidates": sampler.candidates_seen}
    return bank, {**seconds, "detail": detail}  # type: ignore[dict-item]
