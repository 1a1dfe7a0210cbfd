"""The model as the edge runs it: bundle contract, preprocessing, engines, the Inspector, self-test.

What belongs here is everything between "a directory on disk" and "a score and a map for one
frame": loading and validating ``bundle.yaml`` (:mod:`.bundle`, its types in :mod:`.manifest`,
the formats table in :mod:`.formats`), turning pixels into the graph's tensor (:mod:`.preprocess`,
:mod:`.imageio`), executing the graph (:mod:`.engines`, one module per engine behind an explicit
registry), deciding and finding regions (:mod:`.inspector`) and the load-time self-test
(:mod:`.selftest`). Training, export and calibration use these same modules so that what is
calibrated is what is deployed.

May import :mod:`edge.ops` and :mod:`edge.configfields`; never cameras, wire, daemon, torch or onnx.
"""
