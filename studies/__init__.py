"""Studies: sweeps and trade-off curves built on the four product packages, which never import them.

A study answers a design question (which coreset ratio, which map resolution) by running the
real pipeline many times: training, export, calibration and the edge benchmark, each through
its own package. It may import all four (``training``, ``export``, ``calibration``, ``edge``);
none of them may import a study, so a product package never depends on an experiment and the
figures a default was chosen from can be reproduced with ``edge-tradeoff``.
"""
