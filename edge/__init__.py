"""Line-side inspection runtime: load a bundle, grab frames, decide OK/NG, publish verdicts.

This package is what an industrial PC installs. It must stay importable without torch, onnx or
the training/export/calibration packages (a test checks this in a fresh interpreter).

Sub-packages, lowest first; each may import only those listed before it:

- :mod:`edge.configfields`: rules every config section shares (relative paths, endpoints);
- :mod:`edge.extras`: which module belongs to which optional extra, and the one-line error naming it;
- :mod:`edge.ops`: files written atomically, logging, latency windows, metrics, sd_notify, NG archive;
- :mod:`edge.model`: the bundle contract, preprocessing, inference engines, the ``Inspector``, self-test;
- :mod:`edge.cameras`: camera sources and pixel formats;
- :mod:`edge.control`: CurveZMQ keys and sockets, the control server and its client;
- :mod:`edge.wire`: the messages on the wire (verdict, heartbeat, status, event), publisher, subscriber;
- :mod:`edge.outputs`: outputs beside the publisher (PLC, broker) on one bounded-queue base;
- :mod:`edge.view`: the operator's live view, a companion process subscribing to the verdict stream;
- :mod:`edge.daemon`: config, pipeline threads, accounting, sequence counter, side services, supervisor;
- :mod:`edge.tools`: benches, soak and the daemon harness they share with the tests;
- :mod:`edge.cli`: the ``edge-inspect`` command.
"""

__version__ = "0.1.0"
