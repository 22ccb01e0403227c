"""fit, evaluate and predict hand numpy's BLAS its thread counts back when they end."""
import numpy
import pytest

import flowlearn as fl
from flowlearn.core import parallel
from tests._threads import blas_threads, threads  # noqa: F401 (a fixture)


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_fit_evaluate_and_predict_hand_blas_back(call, threads):
    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    rng = numpy.random.default_rng(5)
    x = rng.standard_normal((256, 600)).astype(numpy.float32)
    y = rng.integers(0, 3, 256)
    model = fl.Sequential([fl.layers.Dense(1024, activation="relu"), fl.layers.Dense(3)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=256, epochs=1, verbose=0)  # 256x600 @ 600x1024: a split product
    assert set(blas_threads()) == {4}
    parallel.parallel_slices(4, lambda a, b: None, uses_blas=True)
    assert set(blas_threads()) == {1}
    if call == "evaluate":
        model.evaluate(x, y, batch_size=256)
    elif call == "predict":
        model.predict(x, batch_size=256)
    else:
        model.fit(x, y, batch_size=256, epochs=1, verbose=0)
    assert set(blas_threads()) == {4}
