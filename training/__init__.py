"""Training side of the inspection runtime: fit PatchCore on good images into a run directory.

``training.train.fit`` builds a run (``model.pt`` + ``run.yaml``) that export turns into the ONNX
bundle the edge daemon runs; ``training.patchcore.PatchCore`` is the plain torch model that gets
exported; ``edge-train`` (``training.cli:main``) is the command line. Pixels are prepared only
through ``edge.model.preprocess`` so training and the line see the same input. The modules stay
importable on their own; nothing here is imported by ``edge/``.

Importing the package sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment says otherwise,
before torch loads OpenMP: on a CPU shared with other jobs, torch's spinning worker threads waited
for each other at every small operation, and the embedding and coreset loops ran 3-4x slower in
wall time and burnt CPU doing it (measured on the 2-core development machine at load 7).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
