"""Training-time augmentation for the reconstruction autoencoder, applied to whole batches on the device.

An autoencoder sees only a few hundred good images; rotations, flips and brightness changes make
it reconstruct the part's appearance rather than memorise those exact images, and input noise
makes it a denoising autoencoder, which is what keeps skip connections from copying a defect
straight through; synthetic defects (a rectangle of another image's pixels or of noise pasted
into the input, the clean image as target) teach it to repair a local anomaly from its context
instead of copying it, which is what makes a skip-connected network usable as a detector.
Which transforms help depends on the category: a bottle seen from above may be
rotated and flipped freely, an oriented texture or a part whose flipped view is itself a defect
may not, so every transform is off unless a preset or ``--set augment.<name>=...`` turns it on.
Geometric and brightness changes apply to input and target alike; noise and synthetic defects
only to the input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from training.configdict import known_keys, plain


@dataclass(frozen=True)
class Augmentation:
    """``rotation``: max degrees either way; ``hflip``/``vflip``: probability 0.5 each when on;
    ``noise``: std of Gaussian input noise (images in [-1, 1]); ``brightness``: max relative change;
    ``defects``: probability per image of a synthetic defect in the input, a rectangle whose sides
    are ``defect_size`` (min, max) fractions of the image's."""

    rotation: float = 0.0
    hflip: bool = False
    vflip: bool = False
    noise: float = 0.0
    brightness: float = 0.0
    defects: float = 0.0
    defect_size: tuple[float, float] = (0.05, 0.25)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defect_size", tuple(float(v) for v in self.defect_size))
        if not 0.0 <= self.rotation <= 180.0 or self.noise < 0 or not 0.0 <= self.brightness < 1.0:
            raise ValueError(f"augment: rotation in [0, 180], noise >= 0, brightness in [0, 1), got {asdict(self)}")
        low, high = self.defect_size if len(self.defect_size) == 2 else (0.0, 0.0)
        if not 0.0 <= self.defects <= 1.0 or not 0.0 < low <= high <= 1.0:
            raise ValueError(f"augment: defects in [0, 1], defect_size (min, max) in (0, 1], got {asdict(self)}")

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.hflip or self.vflip or self.noise or self.brightness or self.defects)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Augmentation:
        return cls(**known_keys(data, cls, "augment"))


def _rotate(batch: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``batch`` by its angle, reflecting at the borders."""
    radians = degrees * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    grid = F.affine_grid(theta.to(batch.dtype), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def paste_defects(batch: torch.Tensor, probability: float, size: tuple[float, float],
                  generator: torch.Generator) -> torch.Tensor:
    """A copy of ``batch`` where each image, with ``probability``, has one rectangle replaced by the
    pixels of another image of the batch at another place (odd draws) or by uniform noise (even)."""
    out = batch.clone()
    count, _, height, width = batch.shape
    draws = torch.rand(count, 6, generator=generator).tolist()
    for index, (hit, h_frac, w_frac, y_frac, x_frac, kind) in enumerate(draws):
        if hit >= probability:
            continue
        h = max(1, int(round(height * (size[0] + (size[1] - size[0]) * h_frac))))
        w = max(1, int(round(width * (size[0] + (size[1] - size[0]) * w_frac))))
        y, x = int(y_frac * (height - h + 1)), int(x_frac * (width - w + 1))
        if kind < 0.5:
            out[index, :, y:y + h, x:x + w] = torch.rand(out[index, :, y:y + h, x:x + w].shape,
                                                       generator=generator).to(batch.device) * 2.0 - 1.0
        else:
            source = int(torch.randint(count, (1,), generator=generator))
            sy = int(torch.randint(height - h + 1, (1,), generator=generator))
            sx = int(torch.randint(width - w + 1, (1,), generator=generator))
            out[index, :, y:y + h, x:x + w] = batch[source, :, sy:sy + h, sx:sx + w].flip(-1, -2)
    return out


def hide_cells(batch: torch.Tensor, cells: tuple[int, ...], sets: int, generator: torch.Generator) -> torch.Tensor:
    """A copy of ``batch`` with about ``1 / sets`` of each image's square cells set to 0 (mid-grey).

    The training side of inpainting reconstruction (RIAD): each image draws a cell size from
    ``cells`` and a random group for every cell, and the cells of one group are hidden; the target
    stays the whole clean image, so the network learns to predict hidden cells from their
    surroundings. Inference hides fixed groups instead (``training.families.autoencoder.inpaint_masks``).
    """
    count, _, height, width = batch.shape
    masks = []
    for _ in range(count):
        cell = cells[int(torch.randint(len(cells), (1,), generator=generator))]
        grid = torch.randint(sets, (-(-height // cell), -(-width // cell)), generator=generator) == 0
        masks.append(grid.repeat_interleave(cell, 0).repeat_interleave(cell, 1)[:height, :width])
    hidden = torch.stack(masks).unsqueeze(1).to(batch.device)
    return batch.masked_fill(hidden, 0.0)


def augment(batch: torch.Tensor, spec: Augmentation, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(network input, reconstruction target) for a batch ``(B, C, H, W)`` in [-1, 1].

    ``generator`` lives on the CPU (seeded by the trainer, saved in checkpoints); draws are made
    there and moved to the batch's device, so a run is reproducible on either.
    """
    if not spec.active:
        return batch, batch
    size = batch.shape[0]
    device = batch.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return (torch.rand(size, generator=generator) * (high - low) + low).to(device)

    target = batch
    if spec.hflip:
        flip = (torch.rand(size, generator=generator) < 0.5).to(device).view(-1, 1, 1, 1)
        target = torch.where(flip, target.flip(-1), target)
    if spec.vflip:
        flip = (torch.rand(size, generator=generator) < 0.5).to(device).view(-1, 1, 1, 1)
        target = torch.where(flip, target.flip(-2), target)
    if spec.rotation:
        target = _rotate(target, uniform(-spec.rotation, spec.rotation))
    if spec.brightness:
        gain = uniform(1.0 - spec.brightness, 1.0 + spec.brightness).view(-1, 1, 1, 1)
        target = ((target + 1.0) * gain - 1.0).clamp(-1.0, 1.0)
    source = target
    if spec.noise:
        noise = torch.randn(target.shape, generator=generator).to(device)
        source = (target + spec.noise * noise).clamp(-1.0, 1.0)
    if spec.defects:
        source = paste_defects(source, spec.defects, spec.defect_size, generator)
    return source, target
