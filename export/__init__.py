"""Turning a trained run into a deployable bundle (graph + ``bundle.yaml``), checked for parity."""
