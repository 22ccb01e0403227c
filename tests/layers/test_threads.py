"""fit, evaluate and predict hand numpy's BLAS its thread counts back when they end."""
import pytest

import flowlearn as fl
from flowlearn.core import parallel
from tests._threads import blas_threads, split_sized_problem, threads  # noqa: F401 (a fixture)


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_fit_evaluate_and_predict_hand_blas_back(call, threads):
    x, y = split_sized_problem(threads)
    model = fl.Sequential([fl.layers.Dense(1024, activation="relu"), fl.layers.Dense(3)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=512, epochs=1, verbose=0)  # 512x600 @ 600x1024: a split product
    assert set(blas_threads()) == {4}
    parallel.parallel_slices(4, lambda a, b: None, uses_blas=True)
    assert set(blas_threads()) == {1}
    if call == "evaluate":
        model.evaluate(x, y, batch_size=512)
    elif call == "predict":
        model.predict(x, batch_size=512)
    else:
        model.fit(x, y, batch_size=512, epochs=1, verbose=0)
    assert set(blas_threads()) == {4}
