"""Functional forms: the model functions of the tf.layers examples, run twice, trained a few steps."""
import numpy
import pytest

import flowlearn as fl
from flowlearn import layers

IMAGES = numpy.random.default_rng(0).standard_normal((8, 8, 8, 1)).astype("float32")
LABELS = numpy.arange(8) % 3


def cnn(store, x, training):
    with fl.variable_scope(store):
        h = layers.conv2d(x, 4, 3, padding="same", activation="relu")
        h = layers.max_pooling2d(h, 2, 2)
        h = layers.conv2d(h, 6, 3, activation="relu")
        h = layers.average_pooling2d(h, 2, strides=1, padding="same")
        h = layers.batch_normalization(h, training=training)
        h = layers.flatten(h)
        h = layers.dense(h, 16, activation="relu")
        h = layers.dropout(h, rate=0.5, training=training)
        return layers.dense(h, 3)


def test_model_function_shapes_and_weights_reused_across_calls():
    store = fl.VariableStore(seed=0)
    assert cnn(store, IMAGES, training=False).shape == (8, 3)
    names = [w.name for w in store.variables]
    assert names == [
        "conv2d/kernel", "conv2d/bias", "conv2d_1/kernel", "conv2d_1/bias", "batch_normalization/gamma",
        "batch_normalization/beta", "batch_normalization/moving_mean", "batch_normalization/moving_variance",
        "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    first = cnn(store, IMAGES, training=False).numpy()
    numpy.testing.assert_array_equal(cnn(store, IMAGES, training=False).numpy(), first)
    assert [w.name for w in store.variables] == names


def test_training_steps_reduce_the_loss_and_update_moving_statistics():
    store = fl.VariableStore(seed=1)
    targets = fl.tensor(numpy.eye(3, dtype="float32")[LABELS])

    def loss():
        logits = cnn(store, IMAGES, training=True)
        log_probs = fl.ops.log_softmax(logits)
        return -(log_probs * targets).sum() / 8.0

    with fl.no_grad():
        cnn(store, IMAGES, training=False)
    moving = store.non_trainable_variables[0].numpy().copy()
    fl.layers.set_random_seed(0)
    losses = []
    for _ in range(15):
        value = loss()
        losses.append(value.item())
        for w in store.trainable_variables:
            w.zero_grad()
        value.backward()
        for w in store.trainable_variables:
            w.data -= 0.1 * w.grad
    assert losses[-1] < 0.7 * losses[0]
    assert not numpy.array_equal(store.non_trainable_variables[0].numpy(), moving)
    after = store.non_trainable_variables[0].numpy().copy()
    cnn(store, IMAGES, training=False)  # inference leaves them alone
    numpy.testing.assert_array_equal(store.non_trainable_variables[0].numpy(), after)


def test_conv2d_transpose_and_explicit_names():
    store = fl.VariableStore()
    with fl.variable_scope(store):
        y = layers.conv2d_transpose(numpy.ones((2, 4, 4, 3)), 5, 3, strides=2, padding="same", name="up")
    assert y.shape == (2, 8, 8, 5) and store.variables[0].name == "up/kernel"


def test_weightless_forms_work_outside_a_scope():
    assert layers.max_pooling2d(IMAGES, 2, 2).shape == (8, 4, 4, 1)
    assert layers.average_pooling2d(IMAGES, 3, 1, padding="same").shape == (8, 8, 8, 1)
    assert layers.flatten(IMAGES).shape == (8, 64)
    numpy.testing.assert_array_equal(layers.dropout(IMAGES, 0.5).numpy(), IMAGES)  # training=False by default


def test_dropout_training_flag_and_seed():
    x = numpy.ones((50, 40), dtype="float32")
    dropped = layers.dropout(x, 0.5, training=True).numpy()
    assert set(numpy.unique(dropped)) == {0.0, 2.0}
    with fl.training_mode():
        assert (layers.dropout(x, 0.5, training=None).numpy() == 0).any()
        numpy.testing.assert_array_equal(layers.dropout(x, 0.5).numpy(), x)
    a = layers.dropout(x, 0.5, training=True, seed=123).numpy()
    b = layers.dropout(x, 0.5, training=True, seed=123).numpy()
    assert not numpy.array_equal(a, b)  # a seeded sequence, not one mask repeated
    with pytest.raises(ValueError, match=r"`rate`.*Received: rate=1.5"):
        layers.dropout(x, 1.5)


def test_bad_arguments_are_reported_as_by_the_layer_classes():
    with fl.variable_scope(fl.VariableStore()):
        with pytest.raises(ValueError, match=r"`units`.*Received: units=0"):
            layers.dense(IMAGES, 0)
        with pytest.raises(ValueError, match=r"`padding`.*Received: padding='full'"):
            layers.conv2d(IMAGES, 2, 3, padding="full")
    with pytest.raises(ValueError, match=r"`padding`.*Received: padding='full'"):
        layers.max_pooling2d(IMAGES, 2, 2, padding="full")
