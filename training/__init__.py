"""Training side of the inspection runtime: fit PatchCore on good images into a run directory.

``training.train.fit`` builds a run (``model.pt`` + ``run.yaml``) that export turns into the ONNX
bundle the edge daemon runs; ``training.patchcore.PatchCore`` is the plain torch model that gets
exported; ``edge-train`` (``training.cli:main``) is the command line. Pixels are prepared only
through ``edge.model.preprocess`` so training and the line see the same input. The modules stay
importable on their own; nothing here is imported by ``edge/``.
"""
