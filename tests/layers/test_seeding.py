"""set_random_seed: one seed makes initial weights and dropout masks repeatable."""
import numpy
import pytest

import flowlearn as fl


def _draw():
    layer = fl.layers.Dense(4)
    layer.build((None, 3))
    mask = fl.layers.Dropout(0.5)(numpy.ones((4, 4), dtype="float32"), training=True).numpy()
    return layer.kernel.numpy(), mask


def test_same_seed_same_weights_and_masks():
    fl.layers.set_random_seed(42)
    kernel, mask = _draw()
    fl.layers.set_random_seed(42)
    again = _draw()
    numpy.testing.assert_array_equal(kernel, again[0])
    numpy.testing.assert_array_equal(mask, again[1])
    fl.layers.set_random_seed(43)
    assert not numpy.array_equal(kernel, _draw()[0])


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match=r"set_random_seed: expected a non-negative integer or None"):
        fl.layers.set_random_seed(seed)
