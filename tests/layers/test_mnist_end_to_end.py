"""End to end on the bundled MNIST subset (8,000 train / 2,000 test, pixels / 255), with the worked
examples' models and the accuracy each must reach. Seeds are fixed, so each run is the same run.

The worked examples' CNN is the model of ``flowlearn demo``: its accuracy (>= 0.975) is asserted once, by
tests/test_cli.py::test_full_demo_reaches_0975, rather than trained twice per suite run."""
import pytest
from threadpoolctl import threadpool_limits

import flowlearn as fl
from flowlearn.core import optimizers
from flowlearn.io.datasets import load_mnist
from flowlearn.layers import Dense, Input


@pytest.fixture(scope="module")
def mnist():
    (x_train, y_train), (x_test, y_test) = load_mnist()
    assert len(x_train) == 8000 and len(x_test) == 2000
    return (x_train / 255.0, y_train), (x_test / 255.0, y_test)


@pytest.fixture(autouse=True)
def _seeded():
    fl.layers.clear_session()
    fl.layers.set_random_seed(0)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # Dense products of 64-100 rows gain nothing from a second BLAS thread, and on a busy machine its
    # spinning made the MLP test 5-20x slower (25-125 s instead of 3-9 s for the same 1,500 steps).
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _flat(x):
    return x.reshape(len(x), 784)


def test_softmax_regression_reaches_088(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    model = fl.Sequential([Input((784,)), Dense(10, activation="softmax", kernel_initializer="zeros")])
    model.compile(optimizers.SGD(learning_rate=0.5), "sparse_categorical_crossentropy", ["accuracy"])
    steps = []

    def count(batch, logs):
        steps.append(batch)
        if len(steps) == 1000:
            model.stop_training = True

    # 1000 steps of 100: 12.5 epochs of 80 batches, the last one stopped half-way.
    model.fit(_flat(x_train), y_train, batch_size=100, epochs=13, verbose=0,
              callbacks=[fl.callbacks.LambdaCallback(on_train_batch_end=count)])
    assert len(steps) == 1000 and model.optimizer.iterations == 1000
    loss, accuracy = model.evaluate(_flat(x_test), y_test, batch_size=500)
    assert accuracy >= 0.88, accuracy


def test_mlp_reaches_095(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    model = fl.Sequential([Input((784,)), Dense(256, activation="relu"), Dense(128, activation="relu"),
                           Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(_flat(x_train), y_train, batch_size=64, epochs=12, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(_flat(x_test), y_test, batch_size=500)
    assert accuracy >= 0.95, accuracy
    predicted = model.predict(_flat(x_test), batch_size=256).argmax(axis=1)
    assert float((predicted == y_test).mean()) == pytest.approx(accuracy)
