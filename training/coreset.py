"""Greedy k-center coreset selection, which shrinks the memory bank PatchCore searches.

Edge latency grows with the bank size, so PatchCore keeps only a subset of the training patches
that still covers them all: start from one random patch, then repeatedly add the patch farthest
from everything chosen so far. Each step is one pass over all candidate patches, so the plain
algorithm costs (bank rows x patches x dimensions) and grows with the square of the data set:
magnetic_tile's 701k patches took 182 s for its 7014-row bank. Three things make it cheap here,
each measured for bank coverage and AUROC by ``python -m studies.coreset``:

* Distances are computed on a seeded Johnson-Lindenstrauss projection to ``projection_dim`` (32)
  dimensions: a step reads 3x less than on the 96 raw dimensions of mobilenet_v2's features.
* Candidates are preselected as the patches stream out of the backbone
  (:class:`CoresetSampler`): every image (or tile) keeps its own greedy k-center subset of
  ``oversample`` (5) times the final ratio, all images of a batch selected at once in one batched
  pass. A k-center cover of the union of per-part covers is a cover of the whole (the composable
  coreset argument), and the final greedy then runs over a twentieth of the patches, from fast cache
  instead of main memory. Only the candidates are stored, so memory stays bounded by
  ``max_rows`` however many images are trained.
* Every step is one fused ``addmm``/``baddbmm`` plus an in-place minimum on FP32 (half precision
  has no fast CPU kernel here: it measured 2-4x slower per step).
"""

from __future__ import annotations

import logging
import math
import time

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)

DEFAULT_PROJECTION_DIM = 32
# 5, not 10: ``python -m studies.coreset`` measured it no worse (bottle 1.000 / 0.9864 pixel AUROC both;
# magnetic_tile 0.9410 / 0.7907 against 0.9388 / 0.7798) at 2.3-2.5x less selection time (docs/accuracy.md).
DEFAULT_OVERSAMPLE = 5.0
# Candidate rows kept in memory at most (x dimensions x 4 bytes: 4M x 96 = 1.5 GB is the worst case
# allowed; the default magnetic_tile run keeps about 70k).
DEFAULT_MAX_ROWS = 4_000_000


def projection_matrix(in_dim: int, dim: int, generator: torch.Generator) -> torch.Tensor | None:
    """A Gaussian JL matrix ``(in_dim, dim)``, or None when ``in_dim <= dim`` (no projection needed)."""
    if in_dim <= dim:
        return None
    return torch.randn(in_dim, dim, generator=generator, dtype=torch.float32) / dim**0.5


def project(features: torch.Tensor, matrix: torch.Tensor | None) -> torch.Tensor:
    """``features @ matrix`` in FP32 (the features themselves when ``matrix`` is None)."""
    features = features.to(torch.float32)
    return features if matrix is None else features @ matrix.to(features.device)


def random_projection(features: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Project ``features`` (N, D) to ``dim`` columns with a Gaussian JL matrix (identity if D <= dim)."""
    return project(features, projection_matrix(int(features.shape[1]), dim, generator))


def _greedy_projected(projected: torch.Tensor, count: int, generator: torch.Generator,
                      progress: bool) -> torch.Tensor:
    """Greedy k-center on already projected rows (N, d): ``count`` indices in selection order."""
    total = int(projected.shape[0])
    # Columns are points: one step reads the matrix row by row, which vectorises across points.
    columns = projected.T.contiguous()
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
        center = torch.index_select(columns, 1, current)  # (d, 1)
        # |x|^2 - 2 c.x + |c|^2 for every point x, one pass over the projected features.
        torch.addmm(sq_norms, center.T, columns, alpha=-2.0, out=dist)
        dist.add_(torch.index_select(sq_norms, 1, current))
        torch.minimum(min_dist, dist, out=min_dist)
        min_dist.index_fill_(1, current, float("-inf"))  # never pick a chosen point again
        current = torch.argmax(min_dist, dim=1)
        selected[i] = current[0]
    return selected


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
        return _greedy_projected(projected, count, generator, progress)


def greedy_per_chunk(points: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-center inside each chunk of ``points`` (G, n, d) at once: indices (G, ``count``) into n.

    The G chunks are independent selections run in lockstep, so one python step serves all of
    them (a batch of images costs ``count`` steps, not ``G * count``).
    """
    chunks, rows, _ = points.shape
    if not 1 <= count <= rows:
        raise ValueError(f"per-chunk coreset size must be in [1, {rows}], got {count}")
    if count == rows:
        return torch.arange(rows, device=points.device).expand(chunks, rows)
    with torch.no_grad():
        sq_norms = (points * points).sum(dim=2)  # (G, n)
        batch = torch.arange(chunks, device=points.device)
        current = torch.randint(rows, (chunks,), generator=generator).to(points.device)
        selected = torch.empty(chunks, count, dtype=torch.long, device=points.device)
        selected[:, 0] = current
        min_dist = torch.full((chunks, rows), float("inf"), dtype=torch.float32, device=points.device)
        for i in range(1, count):
            center = points[batch, current].unsqueeze(2)  # (G, d, 1)
            dist = torch.baddbmm(sq_norms.unsqueeze(2), points, center, alpha=-2.0).squeeze(2)
            dist += sq_norms[batch, current].unsqueeze(1)
            torch.minimum(min_dist, dist, out=min_dist)
            min_dist[batch, current] = float("-inf")
            current = torch.argmax(min_dist, dim=1)
            selected[:, i] = current
    return selected


def coreset_size(total: int, ratio: float) -> int:
    """How many rows a ``ratio`` keeps out of ``total`` (at least one)."""
    return max(1, min(total, round(total * ratio)))


class CoresetSampler:
    """Streaming coreset: feed patch embeddings batch by batch, get the memory bank at the end.

    ``add`` takes the rows of G images (or tiles) as ``(G, n, D)`` and keeps each one's greedy
    k-center candidates (``oversample * ratio`` of its rows, bounded so that at most ``max_rows``
    are kept for ``expected_chunks`` chunks); ``finish`` runs the greedy selection over all
    candidates and returns ``ratio`` of every row seen. Selection is seeded and deterministic.
    ``oversample=None`` keeps every row (the plain, single-stage algorithm); ``chunk_rows`` splits
    each chunk into strips of about that many rows before preselection. Should the candidates
    outgrow ``max_rows`` (a very large data set), they are compacted to half of it by the same
    greedy selection, so memory stays bounded whatever the number of images.
    """

    def __init__(self, ratio: float, *, seed: int = 0, oversample: float | None = DEFAULT_OVERSAMPLE,
                 projection_dim: int = DEFAULT_PROJECTION_DIM, max_rows: int = DEFAULT_MAX_ROWS,
                 chunk_rows: int | None = None, final_dim: int | None = None) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"coreset ratio must be in (0, 1], got {ratio}")
        self.ratio = ratio
        self.oversample = oversample
        self.projection_dim = projection_dim
        self.max_rows = max_rows
        self.chunk_rows = chunk_rows
        self.final_dim = final_dim
        self.candidates_seen = 0
        self.generator = torch.Generator().manual_seed(seed)
        self.matrix: torch.Tensor | None = None
        self.rows_seen = 0
        self._kept: list[torch.Tensor] = []
        self._projected: list[torch.Tensor] = []
        self.seconds = {"preselect": 0.0, "select": 0.0}

    def keep_per_chunk(self, rows: int) -> int:
        """How many candidates one chunk of ``rows`` keeps."""
        keep = rows
        if self.oversample is not None and self.ratio < 1.0:
            keep = math.ceil(rows * min(1.0, self.ratio * self.oversample))
        return max(1, min(rows, keep))

    def add(self, chunks: torch.Tensor) -> None:
        """Take the embeddings ``(G, n, D)`` of G images or tiles."""
        if chunks.ndim != 3:
            raise ValueError(f"expected (chunks, rows, dim) embeddings, got shape {tuple(chunks.shape)}")
        started = time.perf_counter()
        count, rows, dim = (int(v) for v in chunks.shape)
        if self.chunk_rows and rows > self.chunk_rows:  # split each image's rows into strips
            parts = next(p for p in range(rows // self.chunk_rows, 0, -1) if rows % p == 0)
            chunks = chunks.reshape(count * parts, rows // parts, dim)
            count, rows = count * parts, rows // parts
        if self.matrix is None and not self._kept:
            self.matrix = projection_matrix(dim, self.projection_dim, self.generator)
        chunks = chunks.to(torch.float32)
        projected = project(chunks.reshape(-1, dim), self.matrix).reshape(count, rows, -1)
        keep = self.keep_per_chunk(rows)
        if keep < rows:
            index = greedy_per_chunk(projected, keep, self.generator)
            gather = index.unsqueeze(2)
            chunks = torch.gather(chunks, 1, gather.expand(-1, -1, dim))
            projected = torch.gather(projected, 1, gather.expand(-1, -1, projected.shape[2]))
        self._kept.append(chunks.reshape(-1, dim).clone())
        self._projected.append(projected.reshape(-1, projected.shape[2]).clone())
        self.rows_seen += count * rows
        self.candidates_seen += count * keep
        if self.rows_kept > self.max_rows:
            self._compact()
        self.seconds["preselect"] += time.perf_counter() - started

    def _compact(self) -> None:
        kept, projected = torch.cat(self._kept), torch.cat(self._projected)
        log.info("coreset: compacting %s candidates to %s (max_rows %s)", kept.shape[0], self.max_rows // 2,
                 self.max_rows)
        with torch.no_grad():
            index = _greedy_projected(projected, self.max_rows // 2, self.generator, progress=False)
        self._kept, self._projected = [kept[index]], [projected[index]]

    @property
    def rows_kept(self) -> int:
        return sum(int(k.shape[0]) for k in self._kept)

    def finish(self, progress: bool = True) -> torch.Tensor:
        """The memory bank: ``coreset_size(rows_seen, ratio)`` rows chosen from the candidates."""
        if not self._kept:
            raise ValueError("no embeddings were added to the coreset sampler")
        started = time.perf_counter()
        kept = torch.cat(self._kept)
        projected = torch.cat(self._projected)
        self._kept, self._projected = [], []
        count = min(coreset_size(self.rows_seen, self.ratio), int(kept.shape[0]))
        log.info("coreset: %s of %s patches (%s candidates kept, ratio %s)", count, self.rows_seen,
                 kept.shape[0], self.ratio)
        if self.ratio >= 1.0:
            bank = kept
        else:
            with torch.no_grad():
                if self.final_dim is not None:  # the final pass on its own projection (or the raw rows)
                    projected = random_projection(kept, self.final_dim, self.generator)
                bank = kept[_greedy_projected(projected, count, self.generator, progress)]
        self.seconds["select"] += time.perf_counter() - started
        return bank


def subsample(features: torch.Tensor, ratio: float, *, seed: int = 0, progress: bool = True) -> torch.Tensor:
    """The coreset rows of ``features`` for ``ratio`` (1.0 keeps every row), single stage."""
    if ratio >= 1.0:
        return features
    count = coreset_size(int(features.shape[0]), ratio)
    log.info("coreset: selecting %s of %s patches (ratio %s)", count, features.shape[0], ratio)
    return features[greedy_coreset_indices(features, count, seed=seed, progress=progress)]


def coverage(features: torch.Tensor, bank: torch.Tensor, chunk_rows: int = 65536) -> dict[str, float]:
    """How well ``bank`` covers ``features``: the distance from every row to its nearest bank row.

    ``max`` is the k-center objective the greedy selection minimises; ``mean`` and ``p99`` say how
    close a typical nominal patch stays to the bank (what keeps good parts' scores low).
    """
    bank = bank.to(torch.float32)
    bank_sq = (bank * bank).sum(dim=1)
    nearest = []
    with torch.no_grad():
        for start in range(0, int(features.shape[0]), chunk_rows):
            rows = features[start : start + chunk_rows].to(torch.float32)
            dist = torch.addmm(bank_sq.unsqueeze(0), rows, bank.T, alpha=-2.0).amin(dim=1)
            nearest.append((dist + (rows * rows).sum(dim=1)).clamp(min=0).sqrt())
    values = torch.cat(nearest)
    p99 = values.kthvalue(max(1, math.ceil(0.99 * values.numel()))).values
    return {"max": float(values.max()), "mean": float(values.mean()), "p99": float(p99)}
