"""numpy_input_fn and pandas_input_fn: batches, epochs, shuffling, dict features, errors."""
import itertools

import numpy
import pandas
import pytest

import flowlearn as fl
from flowlearn.io import inputs, numpy_input_fn, pandas_input_fn
from flowlearn.layers.data_adapter import INFINITE, iterate_batches


def _rows(batches):
    """The row order of a pass, read from labels that are the row numbers."""
    return numpy.concatenate([labels for _, labels in batches]).tolist()


def test_exported_from_flowlearn_io():
    assert fl.io.numpy_input_fn is numpy_input_fn is inputs.numpy_input_fn
    assert fl.io.pandas_input_fn is pandas_input_fn


def test_batches_keep_the_last_partial_batch_and_pair_rows():
    x = numpy.arange(20.0).reshape(10, 2)
    y = numpy.arange(10)
    batches = list(numpy_input_fn(x, y, batch_size=4, shuffle=False)())
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    for features, labels in batches:
        numpy.testing.assert_array_equal(features[:, 0], 2.0 * labels)


def test_without_shuffle_batches_are_views_in_order():
    x = numpy.arange(10.0)
    batches = list(numpy_input_fn(x, x, batch_size=3, shuffle=False)())
    assert _rows(batches) == x.tolist()
    assert all(numpy.shares_memory(features, x) for features, _ in batches)


def test_num_epochs_gives_whole_epochs_that_never_share_a_batch():
    y = numpy.arange(7)
    batches = list(numpy_input_fn(y, y, batch_size=3, num_epochs=3, shuffle=True, seed=1)())
    assert [len(labels) for _, labels in batches] == [3, 3, 1] * 3
    epochs = [_rows(batches[i:i + 3]) for i in (0, 3, 6)]
    assert all(sorted(epoch) == list(range(7)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 3  # reshuffled each epoch


def test_shuffle_permutes_indices_reproducibly_and_leaves_the_data_alone():
    x = numpy.arange(50.0)
    original = x.copy()
    first = numpy_input_fn(x, x, batch_size=8, shuffle=True, seed=7)
    again = numpy_input_fn(x, x, batch_size=8, shuffle=True, seed=7)
    other = numpy_input_fn(x, x, batch_size=8, shuffle=True, seed=8)
    order = _rows(first())
    assert sorted(order) == list(range(50)) and order != list(range(50))
    assert _rows(first()) == order  # each call of the input_fn starts from the seed
    assert _rows(again()) == order
    assert _rows(other()) != order
    numpy.testing.assert_array_equal(x, original)


def test_iterating_the_same_batches_again_reshuffles_as_the_next_epoch():
    y = numpy.arange(12)
    batches = numpy_input_fn(y, y, batch_size=5, shuffle=True, seed=3)()
    one, two = _rows(batches), _rows(batches)
    assert sorted(one) == sorted(two) == list(range(12)) and one != two
    # ... exactly the second epoch of the same input_fn with num_epochs=2
    both = _rows(numpy_input_fn(y, y, batch_size=5, num_epochs=2, shuffle=True, seed=3)())
    assert both == one + two


def test_unseeded_shuffle_follows_set_random_seed():
    y = numpy.arange(30)
    fl.layers.set_random_seed(5)
    first = _rows(numpy_input_fn(y, y, shuffle=True)())
    fl.layers.set_random_seed(5)
    assert _rows(numpy_input_fn(y, y, shuffle=True)()) == first


def test_dict_features_and_dict_or_missing_labels():
    x = {"age": numpy.arange(5.0), "city": numpy.array(list("abcde"), dtype=object)}
    (features, labels), *_ = numpy_input_fn(x, batch_size=2, shuffle=False)()
    assert sorted(features) == ["age", "city"] and labels is None
    assert features["city"].tolist() == ["a", "b"]
    y = {"price": numpy.arange(5.0) * 10, "sold": numpy.arange(5) % 2}
    features, labels = next(iter(numpy_input_fn(x, y, batch_size=3, shuffle=True, seed=0)()))
    numpy.testing.assert_array_equal(labels["price"], features["age"] * 10)  # rows stay paired across dicts


def test_infinite_repeat_with_steps():
    y = numpy.arange(5)
    batches = numpy_input_fn(y, y, batch_size=2, num_epochs=None, shuffle=False)()
    assert batches.cardinality() == INFINITE
    with pytest.raises(TypeError, match="repeats forever"):
        len(batches)
    taken = list(itertools.islice(batches, 7))
    assert [labels.tolist() for _, labels in taken] == [[0, 1], [2, 3], [4], [0, 1], [2, 3], [4], [0, 1]]


def test_cardinality_counts_the_batches_of_every_epoch():
    y = numpy.arange(10)
    batches = numpy_input_fn(y, y, batch_size=4, num_epochs=2, shuffle=False)()
    assert batches.cardinality() == len(batches) == 6 == len(list(batches))


def test_the_batches_pass_the_data_adapter_checks():
    x = {"a": numpy.zeros((6, 2)), "b": numpy.ones(6)}
    got = list(iterate_batches(numpy_input_fn(x, numpy.arange(6), batch_size=4, shuffle=False)))
    assert [len(labels) for _, labels in got] == [4, 2]


def test_shuffle_must_be_given_explicitly():
    with pytest.raises(ValueError, match=r"numpy_input_fn: `shuffle` must be given explicitly, as True or False.*shuffle=None"):
        numpy_input_fn(numpy.zeros(3))
    with pytest.raises(ValueError, match=r"pandas_input_fn: `shuffle` must be given explicitly"):
        pandas_input_fn(pandas.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match=r"expected True or False. Received: shuffle='yes'"):
        numpy_input_fn(numpy.zeros(3), shuffle="yes")


@pytest.mark.parametrize("argument, value, expected", [
    ("batch_size", 0, "a positive integer"),
    ("batch_size", 2.5, "a positive integer"),
    ("num_epochs", 0, "a positive integer, or None"),
    ("seed", -1, "a non-negative integer or None"),
])
def test_bad_settings_name_the_argument(argument, value, expected):
    with pytest.raises(ValueError, match=rf"`{argument}`, expected {expected}.*Received: {argument}={value}"):
        numpy_input_fn(numpy.zeros(3), shuffle=False, **{argument: value})


def test_bad_data_is_refused_with_what_was_received():
    with pytest.raises(ValueError, match=r"same number of rows; got x 5, y 4"):
        numpy_input_fn(numpy.zeros(5), numpy.zeros(4), shuffle=False)
    with pytest.raises(ValueError, match=r"got x\['a'\] 5, x\['b'\] 3"):
        numpy_input_fn({"a": numpy.zeros(5), "b": numpy.zeros(3)}, shuffle=False)
    with pytest.raises(TypeError, match="got a pandas DataFrame. Use flowlearn.io.pandas_input_fn"):
        numpy_input_fn(pandas.DataFrame({"a": [1.0]}), shuffle=False)
    with pytest.raises(TypeError, match=r"`x` as a numpy array.*got list of 3 items"):
        numpy_input_fn([1.0, 2.0, 3.0], shuffle=False)
    with pytest.raises(TypeError, match=r"keys of `x` must be strings.*got 0"):
        numpy_input_fn({0: numpy.zeros(3)}, shuffle=False)
    with pytest.raises(ValueError, match="at least one row"):
        numpy_input_fn(numpy.zeros((0, 2)), shuffle=False)


# -- pandas ---------------------------------------------------------------------------------------
def _frame():
    return pandas.DataFrame({
        "age": [30.0, 40.0, 50.0, 60.0, 70.0],
        "city": ["a", "b", "c", "d", "e"],
        "bought": [0, 1, 1, 0, 1],
    })


def test_pandas_features_are_a_dict_of_column_arrays_with_series_labels():
    frame = _frame()
    batches = list(pandas_input_fn(frame[["age", "city"]], frame["bought"], batch_size=2, shuffle=False)())
    features, labels = batches[0]
    assert sorted(features) == ["age", "city"]
    assert features["age"].tolist() == [30.0, 40.0] and features["city"].tolist() == ["a", "b"]
    assert isinstance(labels, numpy.ndarray) and labels.tolist() == [0, 1]
    assert [len(labels) for _, labels in batches] == [2, 2, 1]


def test_pandas_target_column_takes_labels_out_of_the_features():
    features, labels = next(iter(pandas_input_fn(_frame(), target_column="bought", batch_size=5, shuffle=False)()))
    assert sorted(features) == ["age", "city"] and labels.tolist() == [0, 1, 1, 0, 1]
    features, labels = next(iter(pandas_input_fn(_frame(), target_column=["bought", "age"], batch_size=5,
                                                 shuffle=False)()))
    assert list(features) == ["city"] and sorted(labels) == ["age", "bought"]


def test_pandas_dataframe_labels_become_a_dict_and_shuffling_keeps_rows_paired():
    frame = _frame()
    batches = pandas_input_fn(frame[["age"]], frame[["bought", "age"]], batch_size=2, shuffle=True, seed=4)()
    seen = []
    for features, labels in batches:
        numpy.testing.assert_array_equal(features["age"], labels["age"])
        seen += features["age"].tolist()
    assert sorted(seen) == frame["age"].tolist() and seen != frame["age"].tolist()


def test_pandas_errors():
    frame = _frame()
    with pytest.raises(ValueError, match="index of `y` differs from the index of `x`"):
        pandas_input_fn(frame[["age"]], frame["bought"].iloc[::-1], shuffle=False)
    with pytest.raises(ValueError, match="not both"):
        pandas_input_fn(frame, frame["bought"], target_column="bought", shuffle=False)
    with pytest.raises(ValueError, match=r"\['price'\] are not among \['age', 'city', 'bought'\]"):
        pandas_input_fn(frame, target_column="price", shuffle=False)
    with pytest.raises(TypeError, match=r"`x` as a pandas DataFrame; got ndarray of shape \(3,\)"):
        pandas_input_fn(numpy.zeros(3), shuffle=False)
    with pytest.raises(ValueError, match="two columns named 'a'"):
        pandas_input_fn(pandas.DataFrame([[1, 2]], columns=["a", "a"]), shuffle=False)
    with pytest.raises(ValueError, match=r"same number of rows; got x 5, y 4"):
        pandas_input_fn(frame, numpy.zeros(4), shuffle=False)


def test_seed_or_drawn_draws_only_when_unseeded_and_needed():
    # The one place every input_fn and augmentation op resolves `seed`: an explicit seed or an unneeded one
    # leaves the set_random_seed stream where it was; an unseeded, needed one follows it.
    fl.layers.set_random_seed(11)
    assert inputs._seed_or_drawn(7, True) == 7
    assert inputs._seed_or_drawn(None, False) is None
    first = inputs._seed_or_drawn(None)
    fl.layers.set_random_seed(11)
    assert inputs._seed_or_drawn(None, True) == first
    assert inputs._seed_or_drawn(None, True) != first
