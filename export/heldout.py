"""The held-out evidence a graph is judged on: a labelled test set in MVTec layout, and image AUROC.

``test/<type>/*`` holds the images (``good`` for defect-free parts) and
``ground_truth/<type>/<stem>_mask.png`` their defect masks. The export's accuracy guard measures a
reduced-precision graph on such a set, and calibration's evaluation reports on one; both read it
and rank its scores through this module, which sits in ``export`` (the lower of the two) so that
calibration may use it without export importing calibration. ROC AUC is plain numpy rather than
scikit-learn so that evaluation runs on an edge-only install, and so that pixel-level AUROC over
tens of millions of pixels stays one sort, not a Python loop. Convention: label 1 / ``True`` is a
defect (NG).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.model.imageio import list_images
from training.auroc import roc_auc

__all__ = ["GOOD", "LabelledImage", "labelled_test_images", "roc_auc"]

GOOD = "good"


@dataclass(frozen=True)
class LabelledImage:
    """One test image with its defect type (``good`` for none) and mask path if there is one."""

    path: Path
    defect_type: str
    mask: Path | None

    @property
    def is_defect(self) -> bool:
        return self.defect_type != GOOD


def labelled_test_images(data_dir: str | Path) -> list[LabelledImage]:
    """All images under ``data_dir/test``, labelled by folder, masks matched by stem."""
    data_dir = Path(data_dir)
    test_dir = data_dir / "test"
    if not test_dir.is_dir():
        raise FileNotFoundError(f"{test_dir}: no test folder (expected MVTec layout DIR/test/<type>/)")
    images = []
    for type_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        for path in list_images(type_dir):
            mask = None
            if type_dir.name != GOOD:
                candidate = data_dir / "ground_truth" / type_dir.name / f"{path.stem}_mask.png"
                mask = candidate if candidate.is_file() else None
            images.append(LabelledImage(path=path, defect_type=type_dir.name, mask=mask))
    if not images:
        raise FileNotFoundError(f"{test_dir}: no images found")
    if not any(i.defect_type == GOOD for i in images):
        raise FileNotFoundError(f"{test_dir}: no test/good folder; false-reject rate and AUROC need good images")
    return images
