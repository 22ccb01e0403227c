"""VariableStore and variable_scope: get-or-create by name, reuse across entries, prefixes, errors."""
import numpy
import pytest

import flowlearn as fl
from flowlearn import layers

X = numpy.random.default_rng(0).standard_normal((4, 3)).astype("float32")


def _model(store, x, second_name=None):
    with fl.variable_scope(store):
        h = layers.dense(x, 5, activation="relu")
        return layers.dense(h, 2, name=second_name)


def test_calls_in_fresh_scopes_reuse_the_same_weights():
    store = fl.VariableStore()
    first = _model(store, X).numpy()
    variables = store.variables
    assert [w.name for w in variables] == ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    numpy.testing.assert_array_equal(_model(store, X).numpy(), first)
    assert all(a is b for a, b in zip(store.variables, variables)) and len(store.variables) == 4
    assert [layer.name for layer in store.layers] == ["dense", "dense_1"]


def test_distinct_names_create_distinct_weights():
    store = fl.VariableStore()
    _model(store, X, second_name="logits")
    _model(store, X, second_name="other")
    names = [w.name for w in store.variables]
    assert names == ["dense/kernel", "dense/bias", "logits/kernel", "logits/bias", "other/kernel", "other/bias"]
    assert not numpy.array_equal(store.variables[2].numpy(), store.variables[4].numpy())


def test_a_repeated_name_in_one_run_raises_and_auto_names_skip_explicit_ones():
    store = fl.VariableStore()
    with fl.variable_scope(store):
        layers.dense(X, 3, name="shared")
        with pytest.raises(ValueError, match=r"^Variable shared/kernel already exists in this run of the scope; "
                                             r"pass reuse=True or reuse=fl.AUTO_REUSE"):
            layers.dense(X, 3, name="shared")
        layers.dense(X, 3, name="dense")
        layers.dense(X, 3)  # "dense" is taken in this scope entry: this one is dense_1
    assert [layer.name for layer in store.layers] == ["shared", "dense", "dense_1"]


def test_a_layer_found_again_in_a_later_run_is_still_claimed_once_per_run():
    """The path that finds existing layers again (every step of an Estimator) keeps the per-run rules."""
    store = fl.VariableStore()
    with fl.variable_scope(store):
        expected = layers.dense(X, 3, name="shared").numpy()
    with fl.variable_scope(store):
        numpy.testing.assert_array_equal(layers.dense(X, 3, name="shared").numpy(), expected)
        with pytest.raises(ValueError, match=r"^Variable shared/kernel already exists in this run of the scope"):
            layers.dense(X, 3, name="shared")
    for reuse in (True, fl.AUTO_REUSE):
        with fl.variable_scope(store, reuse=reuse):
            for _ in range(2):
                numpy.testing.assert_array_equal(layers.dense(X, 3, name="shared").numpy(), expected)
    for _ in range(2):  # automatic names count per run: dense, then dense_1, in every run
        with fl.variable_scope(store):
            layers.dense(X, 3)
            layers.dense(X, 3)
    with fl.variable_scope(store):
        layers.dense(X, 3)
        with pytest.raises(ValueError, match=r"'dense_1' already holds a Dense created with units=3; got units=4"):
            layers.dense(X, 4)
    assert [layer.name for layer in store.layers] == ["shared", "dense", "dense_1"]


def test_a_layer_found_again_skips_the_general_lookup(monkeypatch):
    """An Estimator's model_fn finds every layer again at every step: that takes the short path (the
    general one, VariableStore._layer, is only for new layers and errors)."""
    store = fl.VariableStore()
    expected = _model(store, X).numpy()

    def general(*args):
        raise AssertionError("VariableStore._layer was called for a layer found again")

    monkeypatch.setattr(fl.VariableStore, "_layer", general)
    numpy.testing.assert_array_equal(_model(store, X).numpy(), expected)


def _block(x):
    with fl.variable_scope("block"):
        return layers.dense(x, 3, activation="relu")


def test_a_helper_entering_its_scope_twice_in_one_run_raises():
    store = fl.VariableStore()
    with fl.variable_scope(store):
        with pytest.raises(ValueError, match=r"^Variable block/dense/kernel already exists"):
            _block(_block(X))
    assert [layer.name for layer in store.layers] == ["block/dense"]
    with fl.variable_scope(store):  # a new run finds block/dense again
        _block(X)
    assert len(store.layers) == 1


def test_reuse_true_shares_within_a_run_and_is_inherited():
    store = fl.VariableStore()
    with fl.variable_scope(store):
        a = _block(X)
        with fl.variable_scope(reuse=True):
            b = _block(X)
        with fl.variable_scope("block", reuse=True):
            with fl.variable_scope(name="inner"):  # reuse=True holds in nested scopes
                with pytest.raises(ValueError, match=r"^Variable block/inner/dense/\.\.\. does not exist: "
                                                     r"variable_scope\(reuse=True\)"):
                    layers.dense(X, 3)
    numpy.testing.assert_array_equal(a.numpy(), b.numpy())
    assert [layer.name for layer in store.layers] == ["block/dense"]


def test_reuse_true_on_a_missing_name_raises():
    store = fl.VariableStore()
    with fl.variable_scope(store):
        with fl.variable_scope("encoder", reuse=True):
            with pytest.raises(ValueError, match=r"^Variable encoder/dense/\.\.\. does not exist"):
                layers.dense(X, 2)
            with pytest.raises(ValueError, match=r"^Variable encoder/w does not exist"):
                layers.get_variable("w", (2,))
    assert store.layers == [] and store.variables == []


def test_auto_reuse_creates_then_shares():
    store = fl.VariableStore()
    with fl.variable_scope(store, reuse=fl.AUTO_REUSE):
        a = _block(X)
        b = _block(X)
        w = layers.get_variable("w", (2,))
        assert layers.get_variable("w", (2,)) is w
    numpy.testing.assert_array_equal(a.numpy(), b.numpy())
    assert [layer.name for layer in store.layers] == ["block/dense"]


def test_repeated_get_variable_in_one_run_raises():
    store = fl.VariableStore()
    with fl.variable_scope(store, name="net"):
        layers.get_variable("w", (2,))
        with pytest.raises(ValueError, match=r"^Variable net/w already exists"):
            layers.get_variable("w", (2,))


def test_name_first_form_takes_the_enclosing_store_and_old_forms_still_work():
    store = fl.VariableStore()
    with fl.variable_scope(store) as yielded:
        assert yielded is store
        with fl.variable_scope("encoder") as inner:
            assert inner is store
            layers.dense(X, 2)
    with fl.variable_scope(store=store, name="decoder"):
        layers.dense(X, 2)
    with fl.variable_scope("head", store=store):
        layers.dense(X, 2)
    assert [layer.name for layer in store.layers] == ["encoder/dense", "decoder/dense", "head/dense"]
    with pytest.raises(TypeError, match=r"no enclosing scope to take one from"):
        with fl.variable_scope("encoder"):
            pass
    with pytest.raises(ValueError, match=r"expected `reuse` to be None, True, False or fl.AUTO_REUSE; got "
                                         r"reuse='x'"):
        with fl.variable_scope(store, "x"):
            pass
    with pytest.raises(TypeError, match="got a name twice"):
        with fl.variable_scope("a", name="b"):
            pass


def test_a_run_per_batch_reuses_the_weights():
    store = fl.VariableStore(seed=1)
    batches = numpy.random.default_rng(2).standard_normal((5, 4, 3)).astype("float32")

    def model_fn(x):
        with fl.variable_scope(store):
            with fl.variable_scope("encoder"):
                h = layers.dense(x, 4, activation="relu")
                h = layers.dense(h, 4, activation="relu")
            return layers.dense(_block(h), 1, name="logits")

    outputs = [model_fn(x).numpy() for x in batches]
    names = [w.name for w in store.variables]
    assert names == ["encoder/dense/kernel", "encoder/dense/bias", "encoder/dense_1/kernel", "encoder/dense_1/bias",
                     "block/dense/kernel", "block/dense/bias", "logits/kernel", "logits/bias"]
    for x, first in zip(batches, outputs):
        numpy.testing.assert_array_equal(model_fn(x).numpy(), first)
    assert [w.name for w in store.variables] == names


def test_store_lists_trainable_and_non_trainable_variables_and_penalties():
    store = fl.VariableStore()
    with fl.variable_scope(store):
        h = layers.dense(X, 4, kernel_regularizer="l2")
        layers.batch_normalization(h, training=True)
    assert [w.name for w in store.trainable_variables] == [
        "dense/kernel", "dense/bias", "batch_normalization/gamma", "batch_normalization/beta"]
    assert [w.name for w in store.non_trainable_variables] == [
        "batch_normalization/moving_mean", "batch_normalization/moving_variance"]
    (penalty,) = store.regularization_losses()
    assert penalty.item() == pytest.approx(0.01 * float((store.variables[0].numpy() ** 2).sum()), rel=1e-5)


def test_name_prefixes_nest():
    store = fl.VariableStore()
    with fl.variable_scope(store, name="encoder"):
        layers.dense(X, 2)
        with fl.variable_scope(name="inner"):
            layers.dense(X, 2)
    assert [layer.name for layer in store.layers] == ["encoder/dense", "encoder/inner/dense"]
    assert store.variables[0].name == "encoder/dense/kernel"


def test_reuse_with_other_arguments_or_class_is_an_error():
    store = fl.VariableStore()
    with fl.variable_scope(store):
        layers.dense(X, 3, name="head")
    with fl.variable_scope(store):
        with pytest.raises(ValueError, match=r"'head' already holds a Dense created with units=3; got units=4\."):
            layers.dense(X, 4, name="head")
    with fl.variable_scope(store):
        with pytest.raises(ValueError, match="'head' already holds a Dense.*request for a Conv2D"):
            layers.conv2d(numpy.ones((1, 4, 4, 1)), 3, 3, name="head")


def test_functional_forms_with_weights_need_a_scope():
    with pytest.raises(RuntimeError, match=r"layers.dense creates weights, so it must run inside `with fl.var"):
        layers.dense(X, 2)
    with pytest.raises(RuntimeError, match="layers.batch_normalization"):
        layers.batch_normalization(X)
    with pytest.raises(TypeError, match=r"expected a scope name \(str\) or a VariableStore as the first argument; "
                                        r"got dict"):
        with fl.variable_scope({}):
            pass


def test_seeded_stores_are_reproducible_and_weights_round_trip():
    a, b = fl.VariableStore(seed=4), fl.VariableStore(seed=4)
    numpy.testing.assert_array_equal(_model(a, X).numpy(), _model(b, X).numpy())
    weights = a.get_weights()
    assert sorted(weights) == ["dense/bias", "dense/kernel", "dense_1/bias", "dense_1/kernel"]
    c = fl.VariableStore(seed=5)
    _model(c, X)
    c.set_weights(weights)
    numpy.testing.assert_array_equal(_model(c, X).numpy(), _model(a, X).numpy())
    with pytest.raises(ValueError, match=r"unknown: \['extra'\], missing: \[\]"):
        c.set_weights(dict(weights, extra=numpy.ones(1)))
    with pytest.raises(ValueError, match=r"'dense/bias' expected shape \(5,\); got \(4,\)"):
        c.set_weights(dict(weights, **{"dense/bias": numpy.ones(4)}))


def test_get_variable():
    store = fl.VariableStore(seed=0)
    with fl.variable_scope(store, name="net"):
        w = layers.get_variable("w", (3, 2), regularizer="l1")
        b = layers.get_variable("b", (2,), initializer="ones", trainable=False)
    with fl.variable_scope(store, name="net"):
        assert layers.get_variable("w", (3, 2)) is w
    with fl.variable_scope(store, name="net"):
        with pytest.raises(ValueError, match=r"'net/w' exists with shape \(3, 2\); got shape \(2, 3\)"):
            layers.get_variable("w", (2, 3))
    assert w.name == "net/w" and store.trainable_variables == [w] and store.non_trainable_variables == [b]
    assert len(store.regularization_losses()) == 1
    with pytest.raises(RuntimeError, match="get_variable"):
        layers.get_variable("w", (3, 2))


def test_reuse_modes_nest_as_in_tensorflow_and_another_store_starts_its_own_run():
    store, other = fl.VariableStore(), fl.VariableStore()
    with fl.variable_scope(store, reuse=fl.AUTO_REUSE):
        assert fl.get_variable_scope().reuse is fl.AUTO_REUSE
        with fl.variable_scope("a", reuse=False):  # False inherits, as None does
            assert fl.get_variable_scope().reuse is fl.AUTO_REUSE
        with fl.variable_scope("a", reuse=True):
            assert fl.get_variable_scope().reuse is True
        _block(X)
        with fl.variable_scope(other):  # a new run in another store: no prefix, no inherited reuse
            scope = fl.get_variable_scope()
            assert scope.store is other and scope.name == "" and scope.reuse is None
            _block(X)
            with pytest.raises(ValueError, match="already exists"):
                _block(X)
        _block(X)  # back in the first store's AUTO_REUSE run
    assert [layer.name for layer in store.layers] == ["block/dense"] == [layer.name for layer in other.layers]


def test_reuse_variables_turns_the_rest_of_the_scope_to_sharing():
    store = fl.VariableStore()
    with fl.variable_scope(store):
        with fl.variable_scope("gan") as yielded:
            first = _block(X)
            scope = fl.get_variable_scope()
            assert scope.name == "gan" and scope.reuse is None and yielded is store
            scope.reuse_variables()
            second = _block(X)
            with pytest.raises(ValueError, match=r"^Variable gan/other/\.\.\. does not exist"):
                layers.dense(X, 2, name="other")
    numpy.testing.assert_array_equal(first.numpy(), second.numpy())
    assert [layer.name for layer in store.layers] == ["gan/block/dense"]
    with pytest.raises(RuntimeError, match="get_variable_scope"):
        fl.get_variable_scope()


def test_auto_reuse_survives_pickling_as_the_same_object():
    import pickle

    assert pickle.loads(pickle.dumps(fl.AUTO_REUSE)) is fl.AUTO_REUSE and repr(fl.AUTO_REUSE) == "AUTO_REUSE"
