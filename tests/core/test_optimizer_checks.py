"""Range errors of the optimizer arguments say, in words, which values are allowed."""
import pytest

from flowlearn.core import optimizers
from flowlearn.core.optimizers._checks import check_real


@pytest.mark.parametrize("make, expected", [
    (lambda: optimizers.SGD(learning_rate=-1.0), "expected a finite number >= 0.0. Received: learning_rate=-1.0"),
    (lambda: optimizers.SGD(momentum=1.5), "expected a finite number in [0.0, 1.0]. Received: momentum=1.5"),
    (lambda: optimizers.Adam(learning_rate=float("inf")), "expected a finite number >= 0.0. Received: learning_rate=inf"),
])
def test_optimizer_range_errors_read_as_a_sentence(make, expected):
    with pytest.raises(ValueError) as info:
        make()
    assert expected in str(info.value)


@pytest.mark.parametrize("bounds, words", [
    (dict(low=0.0, low_open=True), "> 0.0"),
    (dict(high=1.0), "<= 1.0"),
    (dict(high=1.0, high_open=True), "< 1.0"),
    (dict(low=0.0, high=1.0, high_open=True), "in [0.0, 1.0)"),
])
def test_every_kind_of_range_is_described_without_dangling_brackets(bounds, words):
    with pytest.raises(ValueError) as info:
        check_real("Opt", "x", float("nan"), **bounds)
    assert f"expected a finite number {words}. Received: x=nan" in str(info.value)
