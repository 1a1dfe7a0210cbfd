"""Line-side inspection runtime: load a bundle, grab frames, decide OK/NG, publish verdicts.

This package is what an industrial PC installs. It must stay importable without torch, onnx or
the training/export/calibration packages (a test checks this in a fresh interpreter).
"""

__version__ = "0.1.0"
