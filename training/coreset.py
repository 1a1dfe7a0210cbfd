"""Greedy k-center coreset selection, which shrinks the memory bank PatchCore searches.

Edge latency grows with the bank size, so PatchCore keeps only a subset of the training patches
that still covers them all: start from one random patch, then repeatedly add the patch farthest
from everything chosen so far. Distances are computed on a seeded random Johnson-Lindenstrauss
projection (128 dimensions by default), as in the paper, which preserves them well enough and
makes each step one matrix-vector product. Each step is a single fused pass over the projected
features (``addmm`` then an in-place minimum), so it runs on whatever device the features are on
and stays bandwidth-bound on CPU.
"""

from __future__ import annotations

import logging

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)

DEFAULT_PROJECTION_DIM = 128


def random_projection(features: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Project ``features`` (N, D) to ``dim`` columns with a Gaussian JL matrix (identity if D <= dim)."""
    if features.shape[1] <= dim:
        return features.to(torch.float32)
    matrix = torch.randn(features.shape[1], dim, generator=generator, dtype=torch.float32) / dim**0.5
    return features.to(torch.float32) @ matrix.to(features.device)


def greedy_coreset_indices(
    features: torch.Tensor,
    count: int,
    *,
    seed: int = 0,
    projection_dim: int = DEFAULT_PROJECTION_DIM,
    progress: bool = True,
) -> torch.Tensor:
    """Indices (``count``,) of rows of ``features`` (N, D) chosen by greedy k-center selection.

    The indices are distinct, in selection order, and depend only on ``features`` and ``seed``.
    """
    total = int(features.shape[0])
    if not 1 <= count <= total:
        raise ValueError(f"coreset size must be in [1, {total}], got {count}")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        projected = random_projection(features, projection_dim, generator)
        # Columns are points: one step reads the matrix row by row, which vectorises across points.
        columns = projected.T.contiguous()
        del projected
        sq_norms = (columns * columns).sum(dim=0, keepdim=True)
        device = columns.device
        start = int(torch.randint(total, (1,), generator=generator).item())
        selected = torch.empty(count, dtype=torch.long, device=device)
        selected[0] = start
        # min_dist[0, i]: squared distance from point i to its nearest selected point.
        min_dist = torch.full((1, total), float("inf"), dtype=torch.float32, device=device)
        dist = torch.empty_like(min_dist)
        current = torch.tensor([start], device=device)
        for i in tqdm(range(1, count), desc="coreset", unit="pt", disable=not progress, mininterval=1.0):
            center = torch.index_select(columns, 1, current)  # (D, 1)
            # |x|^2 - 2 c.x + |c|^2 for every point x, one pass over the projected features.
            torch.addmm(sq_norms, center.T, columns, alpha=-2.0, out=dist)
            dist.add_(torch.index_select(sq_norms, 1, current))
            torch.minimum(min_dist, dist, out=min_dist)
            min_dist.index_fill_(1, current, float("-inf"))  # never pick a chosen point again
            current = torch.argmax(min_dist, dim=1)
            selected[i] = current[0]
    return selected


def coreset_size(total: int, ratio: float) -> int:
    """How many rows a ``ratio`` keeps out of ``total`` (at least one)."""
    return max(1, min(total, int(round(total * ratio))))


def subsample(features: torch.Tensor, ratio: float, *, seed: int = 0, progress: bool = True) -> torch.Tensor:
    """The coreset rows of ``features`` for ``ratio`` (1.0 keeps every row)."""
    if ratio >= 1.0:
        return features
    count = coreset_size(int(features.shape[0]), ratio)
    log.info("coreset: selecting %s of %s patches (ratio %s)", count, features.shape[0], ratio)
    return features[greedy_coreset_indices(features, count, seed=seed, progress=progress)]
