"""Calibrating a bundle: score held-out images through ``edge`` and write the thresholds in.

What is calibrated is what is deployed: scores come from :class:`edge.model.inspector.Inspector` on the
bundle's own graph, never from the torch model. Good images the model was trained on are excluded
(matched by content hash against the bundle's training manifest), because their scores are
optimistically low and would set a threshold that rejects good parts on the line.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from calibration.thresholds import DEFAULT_K, DEFAULT_TARGET_FRR, image_threshold
from edge.model.bundle import Bundle, BundleError, load_bundle, sha256_file, write_bundle_yaml
from edge.model.imageio import ImageReadError, list_images, read_image
from edge.model.inspector import Inspector
from edge.model.manifest import CalibrationRecord, ScoreStats, Thresholds

log = logging.getLogger(__name__)


class CalibrationError(Exception):
    """Calibration cannot produce a trustworthy threshold; the message says why."""


def training_hashes(bundle: Bundle) -> set[str]:
    """sha256 of every image the model was fitted on, from the bundle's training manifest."""
    manifest = bundle.manifest.training.train_manifest if bundle.manifest.training else None
    if not manifest:
        return set()
    path = bundle.root / manifest
    if not path.is_file():
        raise BundleError(f"{path}: training manifest named in bundle.yaml is missing")
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip()}


def score_images(inspector: Inspector, paths: list[Path], desc: str) -> tuple[np.ndarray, list[str]]:
    """Image scores for ``paths``; unreadable files are skipped and returned by name."""
    scores, skipped = [], []
    for path in tqdm(paths, desc=desc, unit="img"):
        try:
            image = read_image(path)
        except ImageReadError as exc:
            log.warning("skipping %s", exc)
            skipped.append(str(path))
            continue
        scores.append(inspector.run(image).score)
    return np.asarray(scores, dtype=np.float64), skipped


def calibrate(
    bundle_dir: str | Path,
    good_dir: str | Path | None = None,
    defects_dir: str | Path | None = None,
    strategy: str = "quantile",
    target_frr: float = DEFAULT_TARGET_FRR,
    k: float = DEFAULT_K,
    threads: int | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """Compute thresholds for the bundle and write them into its ``bundle.yaml``; return them as plain data."""
    bundle = load_bundle(bundle_dir, require_thresholds=False)
    if good_dir is not None:
        good_paths = list_images(good_dir)
        good_source = str(Path(good_dir).resolve())
    else:
        training = bundle.manifest.training
        good_paths = [Path(p) for p in (training.validation_images if training else None) or []]
        good_source = "validation split recorded in bundle.yaml"
        missing = [p for p in good_paths if not p.is_file()]
        if missing:
            raise CalibrationError(f"{missing[0]}: validation image recorded in the bundle is gone; pass --good DIR")
    trained = training_hashes(bundle)
    held_out = [p for p in good_paths if sha256_file(p) not in trained]
    if len(held_out) < len(good_paths):
        log.warning("excluded %d good image(s) the model was trained on", len(good_paths) - len(held_out))
    if not held_out:
        raise CalibrationError(f"no held-out good images: all {len(good_paths)} were used in training")
    inspector = Inspector(bundle, threads=threads, backend=backend)
    good_scores, skipped = score_images(inspector, held_out, "good")
    defect_scores = None
    if defects_dir is not None:
        defect_scores, skipped_defects = score_images(inspector, list_images(defects_dir), "defects")
        skipped += skipped_defects
    if good_scores.size == 0:
        raise CalibrationError("every good image was unreadable")
    threshold, params = image_threshold(strategy, good_scores, defect_scores, target_frr, k)
    if not threshold > 0:
        raise CalibrationError(f"threshold {threshold:g} from the {strategy} strategy is not positive")
    thresholds = Thresholds(
        image=threshold,
        # Regions are the map above the image threshold: an NG part always has a region and an OK part none.
        pixel=threshold,
        strategy=strategy,
        pixel_strategy="same_as_image",
        params=params,
        calibration=CalibrationRecord(
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            good_source=good_source,
            n_good=int(good_scores.size),
            n_defects=0 if defect_scores is None else int(defect_scores.size),
            excluded_training_images=len(good_paths) - len(held_out),
            skipped_unreadable=skipped,
            good_scores=ScoreStats(min=float(good_scores.min()), max=float(good_scores.max()),
                                   mean=float(good_scores.mean()), std=float(good_scores.std())),
        ),
    )
    write_bundle_yaml(bundle.root, bundle.manifest.model_copy(update={"thresholds": thresholds}))
    load_bundle(bundle.root)  # what was written must load as a deployable bundle
    return thresholds.model_dump(mode="json")
