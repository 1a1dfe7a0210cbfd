"""Setting decision thresholds and measuring a bundle, always through ``edge``'s own inference code."""
