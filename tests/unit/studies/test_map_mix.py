"""The context map and the good-image scale of ``studies.map_mix``."""

import numpy as np
import torch

from studies.map_mix import column_context, on_good_scale


def test_column_context_is_zero_on_vertically_uniform_features_and_marks_the_minority_band() -> None:
    features = torch.randn(1, 8, 1, 12).repeat(1, 1, 10, 1)  # every row the same: uniform along columns
    assert torch.allclose(column_context(features), torch.zeros(1, 1, 10, 12), atol=1e-6)
    banded = features.clone()
    banded[:, :, :3] += 2.0  # a band over the top three rows differs from the rest
    context = column_context(banded)[0, 0]
    assert context.shape == (10, 12)
    assert float(context[:3].min()) > 1.0  # the band is far from its columns' medians
    assert float(context[3:].max()) < 1e-5  # the majority below it is the median itself


def test_good_scale_puts_the_good_median_at_zero_and_their_99th_percentile_at_one() -> None:
    good = np.random.default_rng(0).normal(3.0, 0.5, size=(20, 16, 16)).astype(np.float32)
    median, high = np.percentile(good, [50, 99])
    scaled = on_good_scale(np.array([median, high, 2 * high - median]), good)
    np.testing.assert_allclose(scaled, [0.0, 1.0, 2.0], atol=1e-5)
