"""The export command's defaults, in a module that imports nothing heavy.

``edge-export --help`` shows them, and it must answer at once and also on an edge-only install
(no torch): :mod:`export.build`, which uses them, imports torch.
"""

PARITY_TOLERANCE = 1e-3  # largest |score difference| allowed, relative to max(1, |torch score|)
PARITY_IMAGES = 8
