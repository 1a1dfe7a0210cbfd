"""Model families: one module per family with its config and its plain torch model, and the registry.

:mod:`training.families.registry` names every family ``edge-train --model`` can fit in one
explicit dict (nothing registers itself by import side effects). The model modules here import
nothing of the fitting loops (``training.fit_*``), so the loops and the registry can import them
without cycles. To add a family: a module here with its config and model, a fit function taking
a :class:`~training.runs.TrainRequest`, and one entry in the registry.
"""
