"""Reading a labelled test set in MVTec layout: ``test/<type>/*`` and ``ground_truth/<type>/<stem>_mask.png``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.model.imageio import list_images

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
