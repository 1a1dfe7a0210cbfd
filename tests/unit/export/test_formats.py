"""The formats table refuses unsupported pairs with the list of supported ones."""

import pytest

from edge.model.formats import check_format, supported_pairs


def test_supported_pair_is_accepted():
    fmt, precision = check_format("onnx", "fp32")
    assert (fmt.value, precision.value) == ("onnx", "fp32")


@pytest.mark.parametrize("pair", [("onnx", "fp8"), ("tflite", "fp32")])
def test_unsupported_pair_is_refused_with_the_supported_list(pair):
    with pytest.raises(ValueError) as info:
        check_format(*pair)
    assert "/".join(pair) in str(info.value)
    for supported in supported_pairs():
        assert supported in str(info.value)
