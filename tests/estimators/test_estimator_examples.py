"""The worked examples of the model_fn Estimator, as written in docs/estimator.md: a linear model over
numpy_input_fn, a custom DNN regressor and the MNIST autoencoder."""
import numpy
import pytest

import flowlearn as fl
from flowlearn.core import losses
from flowlearn.estimators import Estimator, EstimatorSpec, EvalSpec, ModeKeys, RunConfig, TrainSpec, train_and_evaluate
from flowlearn.io import numpy_input_fn
from flowlearn.io.datasets import load_mnist

QUIET = dict(save_summary_steps=None, log_step_count_steps=None)


def linear_model_fn(features, labels, mode):
    x = features["x"].reshape(-1, 1)
    y = fl.layers.dense(x, 1)
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"y": y})
    loss = losses.mean_squared_error(labels.reshape(-1, 1), y)
    if mode == ModeKeys.EVAL:
        return EstimatorSpec(mode, loss=loss)
    train_op = fl.train.AdamOptimizer(learning_rate=0.5).minimize(loss, global_step=fl.train.get_global_step())
    return EstimatorSpec(mode, loss=loss, train_op=train_op)


def test_linear_model_over_numpy_input_fn_matches_least_squares(tmp_path):
    rng = numpy.random.default_rng(42)
    x = rng.normal(5, 5, 300) + 15
    y = 2 * x + 2 * rng.normal(0, 3, 300)
    x_train, y_train = x[:200], y[:200]
    x_eval, y_eval = x[200:], y[200:]

    est = Estimator(linear_model_fn, str(tmp_path), RunConfig(tf_random_seed=0, **QUIET))
    est.train(numpy_input_fn({"x": x_train}, y_train, batch_size=50, num_epochs=None, shuffle=True, seed=0),
              steps=1500)
    evaluation = est.evaluate(numpy_input_fn({"x": x_eval}, y_eval, batch_size=50, shuffle=False))
    assert evaluation["global_step"] == 1500

    queries = numpy.array([15.0, 20.0, 25.0, 30.0])
    predicted = numpy.array([p["y"][0] for p in est.predict(numpy_input_fn({"x": queries}, shuffle=False))])
    slope, intercept = numpy.polyfit(x_train, y_train, 1)
    least_squares = slope * queries + intercept
    numpy.testing.assert_allclose(predicted, least_squares, rtol=0.05)
    # and the held-out loss is that of the least-squares line, give or take
    assert evaluation["loss"] < 1.1 * numpy.mean((slope * x_eval + intercept - y_eval) ** 2)


def dnn_model_fn(features, labels, mode, params):
    h = features["x"]
    for units in params["hidden_units"]:
        h = fl.layers.dense(h, units, activation="relu")
    output = fl.layers.dense(h, 1)
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"value": output})
    loss = losses.mean_squared_error(labels, output)
    if mode == ModeKeys.EVAL:
        return EstimatorSpec(mode, loss=loss, eval_metric_ops={"rmse": fl.metrics.rmse(labels, output)})
    optimizer = fl.train.GradientDescentOptimizer(params["learning_rate"])
    return EstimatorSpec(mode, loss=loss, train_op=optimizer.minimize(loss, global_step=fl.train.get_global_step()))


def test_custom_dnn_regressor_trains_and_evaluates(tmp_path):
    rng = numpy.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(600, 4)).astype("float32")
    y = (numpy.sin(2 * x[:, :1]) + x[:, 1:2] * x[:, 2:3] - 0.5 * x[:, 3:]).astype("float32")
    train_fn = numpy_input_fn({"x": x[:500]}, y[:500], batch_size=32, num_epochs=None, shuffle=True, seed=1)
    eval_fn = numpy_input_fn({"x": x[500:]}, y[500:], batch_size=64, shuffle=False)
    est = Estimator(dnn_model_fn, str(tmp_path), RunConfig(tf_random_seed=0, **QUIET),
                    params={"hidden_units": [10, 10], "learning_rate": 0.1})
    est.train(train_fn, steps=1)
    before = est.evaluate(eval_fn)
    result, _ = train_and_evaluate(est, TrainSpec(train_fn, max_steps=800), EvalSpec(eval_fn, steps=None))
    assert result["global_step"] == 800
    assert result["loss"] < 0.3 * before["loss"]
    # the loss is the batch-size-weighted mean of per-batch MSEs, i.e. the MSE over all rows: rmse ** 2
    assert result["rmse"] ** 2 == pytest.approx(result["loss"], rel=1e-5)
    predictions = numpy.array([p["value"][0] for p in est.predict(eval_fn)])
    assert numpy.sqrt(numpy.mean((predictions - y[500:, 0]) ** 2)) == pytest.approx(result["rmse"], rel=1e-5)


def autoencoder_model_fn(features, labels, mode, params):
    h = features["image"]
    for units in (256, 128, 16, 128, 256):
        h = fl.layers.dense(h, units, activation="relu")
    reconstruction = fl.layers.dense(h, 784, activation="sigmoid")
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"reconstruction": reconstruction})
    loss = ((reconstruction - features["image"]) ** 2).sum()  # the summed squared error
    if mode == ModeKeys.EVAL:
        return EstimatorSpec(mode, loss=loss)
    optimizer = fl.train.AdamOptimizer(learning_rate=params["learning_rate"])
    return EstimatorSpec(mode, loss=loss, train_op=optimizer.minimize(loss, global_step=fl.train.get_global_step()))


def test_mnist_autoencoder_reduces_its_loss(tmp_path):
    (x_train, _), (x_test, _) = load_mnist()
    images = (x_train[:2000].reshape(-1, 784) / 255.0).astype("float32")
    held_out = (x_test[:500].reshape(-1, 784) / 255.0).astype("float32")
    est = Estimator(autoencoder_model_fn, str(tmp_path), RunConfig(tf_random_seed=0, **QUIET),
                    params={"learning_rate": 1e-3})
    eval_fn = numpy_input_fn({"image": held_out}, batch_size=250, shuffle=False)
    est.train(numpy_input_fn({"image": images}, batch_size=100, shuffle=True, seed=0), steps=1)
    before = est.evaluate(eval_fn)["loss"]
    est.train(numpy_input_fn({"image": images}, batch_size=100, num_epochs=None, shuffle=True, seed=0), steps=150)
    after = est.evaluate(eval_fn)["loss"]
    assert after < 0.5 * before
    reconstruction = next(est.predict(eval_fn))["reconstruction"]
    assert reconstruction.shape == (784,) and 0.0 <= reconstruction.min() and reconstruction.max() <= 1.0
