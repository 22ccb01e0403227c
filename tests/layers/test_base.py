"""The Layer base class: naming, lazy build and locked state, weights, training flag, containers."""
import numpy
import pytest

import flowlearn as fl
from flowlearn.layers import Layer


class Scale(Layer):
    """A minimal custom layer: one trainable vector and one non-trainable counter."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen_training = []

    def build(self, input_shape):
        self.scale = self.add_weight("scale", (input_shape[-1],), "ones", regularizer=fl.layers.regularizers.L2(0.5))
        self.count = self.add_weight("count", (), "zeros", trainable=False)

    def call(self, inputs, training=None):
        self.seen_training.append(training)
        return inputs * self.scale


class Head(Layer):
    """A custom layer with no training argument in call, built through super().build()."""

    def build(self, input_shape):
        super().build(input_shape)
        self.w = self.add_weight("w", (input_shape[-1], 2), "glorot_uniform")

    def call(self, inputs):
        return inputs @ self.w


class Stack(Layer):
    """A container: layers held in a list attribute count as part of it."""

    def __init__(self, layers, **kwargs):
        super().__init__(**kwargs)
        self.layers = list(layers)

    def build(self, input_shape):
        shape = input_shape
        for layer in self.layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=None):
        for layer in self.layers:
            inputs = layer(inputs, training=training)
        return inputs


def test_auto_names_are_unique_per_class():
    fl.layers.clear_session()
    names = [cls().name for cls in (lambda: fl.layers.Dense(2), lambda: fl.layers.Dense(2),
                                    lambda: fl.layers.Conv2D(2, 3), fl.layers.MaxPooling2D,
                                    fl.layers.BatchNormalization, fl.layers.GlobalAveragePooling2D,
                                    lambda: fl.layers.Conv2DTranspose(2, 3), lambda: fl.layers.Dense(2))]
    assert names == ["dense", "dense_1", "conv2d", "max_pooling2d", "batch_normalization",
                     "global_average_pooling2d", "conv2d_transpose", "dense_2"]
    assert fl.layers.Dense(2, name="head").name == "head"


def test_weights_are_created_on_first_call_and_named_after_the_layer():
    layer = fl.layers.Dense(10, name="clf")
    assert not layer.built and layer.weights == []
    layer(numpy.ones((32, 784), dtype="float32"))
    assert layer.built and layer.build_input_shape == (None, 784)
    assert [(w.name, w.shape) for w in layer.weights] == [("clf/kernel", (784, 10)), ("clf/bias", (10,))]
    assert all(w.requires_grad for w in layer.weights)


def test_state_is_locked_after_build():
    layer = fl.layers.Dense(10)
    layer(numpy.ones((32, 784)))
    kernel = layer.kernel
    layer(numpy.ones((5, 784)))  # another batch size is fine
    layer.build((None, 784))  # a compatible build is a no-op
    assert layer.kernel is kernel and len(layer.weights) == 2
    message = r"expected input with last dimension 784; got shape \(32, 100\)"
    with pytest.raises(ValueError, match=message):
        layer(numpy.ones((32, 100)))
    with pytest.raises(ValueError, match=message):
        layer.build((32, 100))
    with pytest.raises(ValueError, match=r'Layer "dense\w*": expected input of rank >= 2; got shape \(784,\)'):
        layer(numpy.ones(784))


def test_rank_is_checked_before_build():
    layer = fl.layers.Conv2D(4, 3)
    with pytest.raises(ValueError, match=r"expected input of rank 4; got shape \(3, 28, 28\)"):
        layer(numpy.ones((3, 28, 28)))
    assert not layer.built and layer.weights == []


def test_failed_build_leaves_no_weights():
    class Broken(Layer):
        def build(self, input_shape):
            self.add_weight("w", (2,), "zeros")
            raise RuntimeError("boom")

        def call(self, inputs, training=None):
            return inputs

    layer = Broken()
    with pytest.raises(RuntimeError, match="boom"):
        layer(numpy.ones((1, 2)))
    assert not layer.built and layer.weights == []


def test_custom_layer_weights_regularizer_and_training_flag():
    layer = Scale(name="scale")
    x = numpy.array([[1.0, 2.0, 3.0]], dtype="float32")
    numpy.testing.assert_array_equal(layer(x).numpy(), x)
    assert [w.name for w in layer.trainable_weights] == ["scale/scale"]
    assert [w.name for w in layer.non_trainable_weights] == ["scale/count"]
    assert not layer.count.requires_grad
    (penalty,) = layer.regularization_losses()
    assert penalty.item() == pytest.approx(0.5 * 3)
    layer(x)
    with fl.training_mode():
        layer(x)
        layer(x, training=False)
    layer(x, training=True)
    assert layer.seen_training == [False, False, True, False, True]
    assert layer.count_params() == 4


def test_call_without_training_argument_and_super_build_chain():
    layer = Head()
    y = layer(numpy.ones((4, 3)), training=True)
    assert y.shape == (4, 2) and [w.shape for w in layer.weights] == [(3, 2)]
    y.sum().backward()
    assert layer.w.grad.shape == (3, 2)


def test_default_compute_output_shape_runs_the_layer():
    class Take2(Layer):
        def call(self, inputs, training=None):
            return inputs[:, :2]

    assert Take2().compute_output_shape((None, 5)) == (None, 2)
    assert Head().compute_output_shape((None, 7)) == (None, 2)


def test_add_weight_rejects_duplicate_names():
    class Twice(Layer):
        def build(self, input_shape):
            self.add_weight("w", (1,), "zeros")
            self.add_weight("w", (1,), "zeros")

        def call(self, inputs, training=None):
            return inputs

    with pytest.raises(ValueError, match="a weight named 'w' already exists"):
        Twice()(numpy.ones((1, 1)))


def test_get_weights_returns_copies_and_set_weights_checks_shapes():
    layer = fl.layers.Dense(3)
    layer(numpy.ones((2, 4)))
    weights = layer.get_weights()
    weights[0][...] = 7.0
    assert not (layer.kernel.numpy() == 7.0).any()
    new = [numpy.full((4, 3), 0.5), numpy.arange(3.0)]
    layer.set_weights(new)
    new[0][...] = 0.0  # the layer copied the values
    numpy.testing.assert_array_equal(layer.kernel.numpy(), numpy.full((4, 3), 0.5, dtype="float32"))
    assert layer.kernel.dtype == numpy.float32
    with pytest.raises(ValueError, match=r'weight "dense\w*/kernel" expected shape \(4, 3\); got \(3, 4\)'):
        layer.set_weights([numpy.ones((3, 4)), numpy.ones(3)])
    numpy.testing.assert_array_equal(layer.bias.numpy(), [0.0, 1.0, 2.0])  # nothing changed on failure
    with pytest.raises(ValueError, match=r"expected 2 arrays with shapes \[\(4, 3\), \(3,\)\]; got 1"):
        layer.set_weights([numpy.ones((4, 3))])
    with pytest.raises(ValueError, match="built first"):
        fl.layers.Dense(3).set_weights([numpy.ones((4, 3)), numpy.ones(3)])


def test_count_params_needs_a_built_layer():
    layer = fl.layers.Dense(10)
    with pytest.raises(ValueError, match="count_params needs the layer built"):
        layer.count_params()
    layer.build((None, 784))
    assert layer.count_params() == 7850


def test_freezing_moves_weights_to_non_trainable():
    layer = fl.layers.Dense(3)
    layer(numpy.ones((2, 4)))
    layer.trainable = False
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    assert not any(w.requires_grad for w in layer.weights)
    layer.trainable = True
    assert len(layer.trainable_weights) == 2 and all(w.requires_grad for w in layer.weights)
    frozen = fl.layers.Dense(3, trainable=False)
    frozen(numpy.ones((2, 4)))
    assert frozen.trainable_weights == [] and not frozen.kernel.requires_grad


def test_layers_held_by_a_layer_are_part_of_it():
    inner = [fl.layers.Dense(4, kernel_regularizer="l2", name="a"), fl.layers.BatchNormalization(name="bn"),
             fl.layers.Dense(2, name="b")]
    stack = Stack(inner, name="stack")
    y = stack(numpy.ones((8, 3)), training=True)
    assert y.shape == (8, 2)
    assert [w.name for w in stack.weights] == [
        "a/kernel", "a/bias", "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance", "b/kernel", "b/bias"]
    assert [w.name for w in stack.non_trainable_weights] == ["bn/moving_mean", "bn/moving_variance"]
    assert len(stack.regularization_losses()) == 1
    assert stack.count_params() == 3 * 4 + 4 + 4 * 4 + 4 * 2 + 2
    stack.set_weights([numpy.zeros(w.shape) for w in stack.weights])
    assert not inner[0].kernel.numpy().any()
    stack.trainable = False
    assert stack.trainable_weights == [] and not inner[2].kernel.requires_grad


def test_dtype_casts_inputs_and_rejects_non_float():
    layer = fl.layers.Dense(2, dtype="float64")
    x = fl.tensor(numpy.ones((3, 4), dtype="float32"), requires_grad=True)
    y = layer(x)
    assert y.dtype == numpy.float64 and layer.kernel.dtype == numpy.float64
    y.sum().backward()
    assert x.grad.dtype == numpy.float32  # the cast passes the gradient back in the input's dtype
    assert fl.layers.Dense(2)(numpy.ones((1, 2), dtype="int64")).dtype == numpy.float32
    with pytest.raises(ValueError, match=r"`dtype`.*Received: dtype=dtype\('int32'\)"):
        fl.layers.Dense(2, dtype="int32")


@pytest.mark.parametrize("kwargs, argument", [
    ({"name": ""}, "name"), ({"trainable": "yes"}, "trainable"), ({"input_shape": (0, 3)}, "input_shape"),
])
def test_bad_base_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        fl.layers.Dense(2, **kwargs)


def test_input_shape_argument_and_build_config():
    layer = fl.layers.Dense(2, input_shape=(784,))
    assert layer.input_shape == (784,) and layer.get_build_config() is None
    layer.build((None, 784))
    config = layer.get_build_config()
    assert config == {"input_shape": [None, 784]}
    clone = fl.layers.Dense.from_config(layer.get_config())
    assert clone.input_shape == (784,)
    clone.build_from_config(config)
    assert clone.kernel.shape == (784, 2)


def test_seeded_and_assigned_generators_make_initial_weights_reproducible():
    fl.layers.set_random_seed(3)
    a = fl.layers.Dense(5)
    a.build((None, 4))
    fl.layers.set_random_seed(3)
    b = fl.layers.Dense(5)
    b.build((None, 4))
    numpy.testing.assert_array_equal(a.kernel.numpy(), b.kernel.numpy())
    c, d = fl.layers.Dense(5), fl.layers.Dense(5)
    c._rng, d._rng = numpy.random.default_rng(11), numpy.random.default_rng(11)
    c.build((None, 4))
    d.build((None, 4))
    numpy.testing.assert_array_equal(c.kernel.numpy(), d.kernel.numpy())
    assert not numpy.array_equal(a.kernel.numpy(), c.kernel.numpy())
    with pytest.raises(ValueError, match="set_random_seed"):
        fl.layers.set_random_seed(-1)


def test_layers_run_on_the_device_of_their_input(device):
    x = fl.tensor(numpy.ones((2, 6, 6, 3)), device=device)
    layer = fl.layers.Conv2D(4, 3, activation="relu")
    y = fl.layers.Dense(2)(fl.layers.Flatten()(fl.layers.MaxPooling2D()(layer(x))))
    assert y.device == device and layer.kernel.device == device
    layer.to("cpu")
    assert layer.kernel.device == "cpu" and layer.device == "cpu"
    assert layer(numpy.ones((1, 6, 6, 3))).device == "cpu"
