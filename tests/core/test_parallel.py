"""Intra-op threads: the split itself, the BLAS thread setting around it, and that every op that
splits its work gives the same numbers on one thread as on several."""
import threading
import time

import numpy
import pytest
from threadpoolctl import threadpool_limits

import flowlearn as fl
from flowlearn.core import losses, optimizers, ops, parallel
from tests._threads import blas_threads, threads  # noqa: F401 (a fixture)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2", None])
def test_set_num_threads_rejects_non_positive_ints(bad):
    with pytest.raises(ValueError, match=r"set_num_threads: expected a positive int; got"):
        fl.set_num_threads(bad)


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setattr(parallel, "_num_threads", None)
    monkeypatch.setenv("FLOWLEARN_NUM_THREADS", "3")
    assert fl.get_num_threads() == 3
    monkeypatch.setattr(parallel, "_num_threads", None)
    monkeypatch.setenv("FLOWLEARN_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match=r"FLOWLEARN_NUM_THREADS must be a positive integer; got 'zero'"):
        fl.get_num_threads()


def test_slices_cover_the_range_in_order_on_separate_threads(threads):
    threads(3)
    ran_on = {}

    def work(start, stop):
        ran_on[start] = threading.get_ident()
        return start, stop

    assert parallel.parallel_slices(10, work) == [(0, 3), (3, 6), (6, 10)]
    # The caller runs the first slice; the pool's threads run the rest (one may take both).
    assert ran_on[0] == threading.get_ident()
    assert ran_on[3] != ran_on[0] and ran_on[6] != ran_on[0]


def test_grain_limits_the_number_of_slices(threads):
    threads(4)
    assert parallel.parallel_slices(10, lambda a, b: (a, b), grain=4) == [(0, 5), (5, 10)]
    assert parallel.parallel_slices(10, lambda a, b: (a, b), grain=6) == [(0, 10)]


def test_work_inside_a_slice_is_not_split_again(threads):
    threads(2)
    inner = parallel.parallel_slices(8, lambda a, b: parallel.parallel_slices(b - a, lambda c, d: (c, d)))
    assert inner == [[(0, 4)], [(0, 4)]]


@pytest.mark.parametrize("failing", [0, 5])
def test_an_error_in_any_slice_reaches_the_caller_after_every_slice_ended(failing, threads):
    threads(2)
    finished = []

    def work(start, stop):
        if start == failing:
            raise RuntimeError(f"slice {start} failed")
        time.sleep(0.2)  # still running when the other slice fails
        finished.append(start)

    with pytest.raises(RuntimeError, match=f"slice {failing} failed"):
        parallel.parallel_slices(10, work)
    # The caller returned only after the other slice ended: no thread still writes into its buffers.
    assert finished == [5 - failing]


def test_blas_is_held_at_one_thread_from_a_split_until_released(threads):
    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    inside = parallel.parallel_slices(4, lambda a, b: blas_threads(), uses_blas=True)
    assert inside == [[1] * len(blas_threads())] * 2
    assert set(blas_threads()) == {1}  # held: setting it back and forth wakes BLAS's spinning workers
    assert parallel._blas.available() == 4  # what flowlearn may use is what BLAS had
    parallel.release_blas()
    assert set(blas_threads()) == {4}
    with pytest.raises(ZeroDivisionError):
        parallel.parallel_slices(4, lambda a, b: 1 / 0, uses_blas=True)
    parallel.release_blas()
    assert set(blas_threads()) == {4}


def test_a_product_blas_would_thread_gets_blas_back_a_while_after_the_last_split(threads, monkeypatch):
    from flowlearn.core.ops._gemm import gemm

    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    parallel.parallel_slices(4, lambda a, b: None, uses_blas=True)
    mid = numpy.ones((128, 256), numpy.float32), numpy.ones((256, 256), numpy.float32)  # 8.4 M multiply-adds
    gemm(numpy, *mid)
    assert set(blas_threads()) == {1}  # just after a split: still held
    monkeypatch.setattr(parallel, "RELEASE_AFTER", 0.0)
    gemm(numpy, *mid)
    assert set(blas_threads()) == {4}


# -- which products split, and where BLAS is held at one thread -------------------------------------
SMALL_PRODUCT = (200, 64, 128)   # 1.6 M multiply-adds: a digits network's first layer at batch 200
MID_PRODUCT = (128, 256, 256)    # 8.4 M: mid-sized, not worth a split
SPLIT_PRODUCT = (128, 784, 256)  # 25.7 M: an MNIST MLP's first layer, split


@pytest.fixture
def fresh_blas_clock(monkeypatch):
    """No split and no product on BLAS's threads ran recently, whatever earlier tests did."""
    monkeypatch.setattr(parallel._blas, "last_split", float("-inf"))
    monkeypatch.setattr(parallel._blas, "last_threaded", float("-inf"))


class _AlwaysSplit:
    """A ``SplitGain`` that measures nothing: every product from ``SPLIT`` on splits, whatever the host's load."""

    def wanted(self):
        return True

    def record(self, seconds, caller_seconds, slices):
        pass


@pytest.fixture
def count_slices(monkeypatch):
    """A list that gets one entry per slice of every product that ``gemm`` splits (and every product
    that may split does: no measured fallback to one thread)."""
    from flowlearn.core.ops import _gemm

    monkeypatch.setattr(_gemm, "split_gain", _AlwaysSplit())
    return _record_slices(monkeypatch)


def _record_slices(monkeypatch):
    from flowlearn.core.ops import _gemm

    seen = []
    real = _gemm.parallel_slices

    def counted(*args, **kwargs):
        results = real(*args, **kwargs)
        seen.extend(results)
        return results

    monkeypatch.setattr(_gemm, "parallel_slices", counted)
    return seen


def _product(shape):
    from flowlearn.core.ops._gemm import gemm

    m, k, n = shape
    return gemm(numpy, numpy.ones((m, k), numpy.float32), numpy.ones((k, n), numpy.float32))


@pytest.mark.parametrize("size, split, expected, in_a_fit", [
    (40 * 30 * 20, False, "one thread", "one thread"),
    (200 * 64 * 128, False, "one thread", "one thread"),   # digits, batch 200
    (200 * 64 * 128, True, "one thread", "one thread"),
    (4_000_000 - 1, False, "one thread", "one thread"),
    (4_000_000, False, "blas", "one thread"),
    (128 * 256 * 128, False, "blas", "one thread"),        # MNIST MLP's second layer, batch 128
    (16_000_000 - 1, False, "blas", "one thread"),
    (16_000_000, False, "split", "split"),
    (128 * 784 * 256, False, "split", "split"),            # MNIST MLP's first layer, batch 128
    (250_000_000, False, "split", "split"),
    (8_000_000 - 1, True, "blas", "one thread"),
    (8_000_000, True, "split", "split"),
])
def test_each_product_size_has_one_regime(size, split, expected, in_a_fit):
    from flowlearn.core.ops._gemm import regime

    assert regime(size, split) == expected
    assert regime(size, split, stretch=True) == in_a_fit


def test_inside_a_fit_call_every_product_runs_on_one_blas_thread_or_splits(threads, fresh_blas_clock,
                                                                          count_slices):
    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    seen = []

    @parallel.hands_blas_back
    def fit():
        seen.append(set(blas_threads()))
        for shape in (SMALL_PRODUCT, MID_PRODUCT):
            _product(shape)
            seen.append(set(blas_threads()))
        assert not count_slices  # neither of those split
        assert (_product(SPLIT_PRODUCT) == 784).all()
        seen.append(set(blas_threads()))
        assert parallel.in_stretch()

    fit()
    assert len(count_slices) == 2
    assert seen == [{4}, {1}, {1}, {1}]  # the mid-sized product no longer takes BLAS's threads back
    assert set(blas_threads()) == {4} and not parallel.in_stretch()


def test_outside_a_fit_call_small_and_mid_sized_products_leave_blas_alone(threads, fresh_blas_clock, count_slices):
    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    assert (_product(SMALL_PRODUCT) == 64).all() and (_product(MID_PRODUCT) == 256).all()
    assert set(blas_threads()) == {4} and not parallel._blas.holding and not count_slices
    _product(SPLIT_PRODUCT)  # a split holds BLAS at one thread, as in a hand-written training loop
    assert len(count_slices) == 2 and set(blas_threads()) == {1}
    _product(MID_PRODUCT)  # within a second of the split: still held, run on one thread
    assert set(blas_threads()) == {1}


def test_a_product_on_blas_threads_just_before_a_fit_call_delays_the_hold(threads, fresh_blas_clock, monkeypatch):
    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    seen = []

    @parallel.hands_blas_back
    def fit():
        _product(SMALL_PRODUCT)  # within a second of a product on BLAS's threads: no back and forth
        seen.append(set(blas_threads()))
        monkeypatch.setattr(parallel, "RELEASE_AFTER", 0.0)  # now "a second" has passed
        _product(MID_PRODUCT)
        seen.append(set(blas_threads()))

    _product(MID_PRODUCT)  # outside the call: BLAS's threads
    fit()
    assert seen == [{4}, {1}]
    assert set(blas_threads()) == {4}


@pytest.mark.parametrize("shape", [SPLIT_PRODUCT, (784, 128, 256), (1000, 500, 300)])
def test_a_split_product_equals_one_blas_thread(shape, threads, count_slices):
    # Output rows or columns per slice: each element is the same BLAS sum as unsplit, on one thread.
    from flowlearn.core.ops._gemm import gemm

    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    m, k, n = shape
    rng = numpy.random.default_rng(7)
    a = rng.standard_normal((m, k)).astype(numpy.float32)
    b = rng.standard_normal((k, n)).astype(numpy.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        one_thread = a @ b
        if m >= n:
            halves = numpy.concatenate([a[:m // 2] @ b, a[m // 2:] @ b])
        else:
            halves = numpy.concatenate([a @ b[:, :n // 2], a @ b[:, n // 2:]], axis=1)
    split = gemm(numpy, a, b)
    assert len(count_slices) == 2
    numpy.testing.assert_array_equal(split, halves)  # the same BLAS calls: bit for bit
    internal = {library.internal_api for library in parallel._blas._lookup()}
    if internal == {"openblas"}:
        numpy.testing.assert_array_equal(split, one_thread)  # and OpenBLAS sums as unsplit
    else:
        _assert_same_up_to_float32_rounding(one_thread, split)


def test_split_gain_stops_splitting_while_splits_do_not_pay_and_probes_now_and_then():
    from flowlearn.core.ops._gemm import SplitGain

    gain = SplitGain()
    assert gain.wanted()  # nothing measured yet: split
    gain.record(0.390, 0.265, 2)  # an idle host: 390 us split against 530 on one thread
    assert gain.ratio == pytest.approx(SplitGain.WEIGHT * 390 / 530) and gain.wanted()
    gain.record(100.0, 0.265, 2)  # one split that lost its core counts CLAMP times one thread, no more
    assert gain.ratio == pytest.approx(SplitGain.WEIGHT * 390 / 530 * (1 - SplitGain.WEIGHT)
                                       + SplitGain.WEIGHT * SplitGain.CLAMP)
    for _ in range(20):
        gain.record(2.0, 0.265, 2)  # next to a busy process: splits took much longer than one thread
    assert gain.ratio > 1.0
    decisions = [gain.wanted() for _ in range(2 * SplitGain.PROBE_EVERY)]
    assert decisions.count(True) == 2 and decisions[SplitGain.PROBE_EVERY - 1]  # one probe in every PROBE_EVERY
    for probes in range(1, 21):
        gain.record(0.390, 0.265, 2)  # probes find the cores free again
        if gain.ratio < 1.0:
            break
    assert probes < 10 and all(gain.wanted() for _ in range(5))
    before = gain.ratio
    gain.record(0.5, 0.5, 1)  # a product that ran whole (one slice) says nothing about splitting
    assert gain.ratio == before


def test_a_product_that_would_split_runs_whole_on_one_held_thread_while_splits_do_not_pay(
        threads, fresh_blas_clock, monkeypatch):
    from flowlearn.core.ops import _gemm

    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    gain = _gemm.SplitGain()
    gain.ratio = 2.0  # measured: splits took twice as long as one thread
    monkeypatch.setattr(_gemm, "split_gain", gain)
    seen = _record_slices(monkeypatch)
    m, k, n = SPLIT_PRODUCT
    rng = numpy.random.default_rng(8)
    a = rng.standard_normal((m, k)).astype(numpy.float32)
    b = rng.standard_normal((k, n)).astype(numpy.float32)
    whole = _gemm.gemm(numpy, a, b)
    assert not seen and set(blas_threads()) == {1}  # not split, and BLAS held at one thread (outside a fit too)
    for _ in range(_gemm.SplitGain.PROBE_EVERY - 1):
        _gemm.gemm(numpy, a, b)
    assert len(seen) == 2  # the probe split
    gain.ratio = 0.0  # splits pay again
    split = _gemm.gemm(numpy, a, b)
    assert len(seen) == 4
    internal = {library.internal_api for library in parallel._blas._lookup()}
    if internal == {"openblas"}:
        numpy.testing.assert_array_equal(whole, split)  # the choice changes timing, not numbers
    else:
        _assert_same_up_to_float32_rounding(whole, split)


def test_a_large_product_always_splits(threads, monkeypatch):
    from flowlearn.core.ops import _gemm

    threads(2)
    gain = _gemm.SplitGain()
    gain.ratio = 2.0
    monkeypatch.setattr(_gemm, "split_gain", gain)
    seen = _record_slices(monkeypatch)
    ones = numpy.ones((2500, 2500), numpy.float32), numpy.ones((2500, 40), numpy.float32)  # 2.5e8 multiply-adds
    assert (_gemm.gemm(numpy, *ones) == 2500).all() and len(seen) == 2


def _blas_threads_seen_in_a_fit(features, rows, hidden, batch_size, epochs):
    """The BLAS thread counts seen after each training batch of an MLP on random data (skips without BLAS)."""
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    seen = set()

    class Record(fl.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.update(blas_threads())

    rng = numpy.random.default_rng(6)
    x, y = rng.standard_normal((rows, features)).astype(numpy.float32), rng.integers(0, 10, rows)
    model = fl.Sequential([fl.layers.Dense(units, activation="relu") for units in hidden] + [fl.layers.Dense(10)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[Record()])
    return seen


def test_an_mlp_with_mid_sized_products_fits_on_one_blas_thread_and_hands_it_back(threads, fresh_blas_clock,
                                                                                   count_slices):
    threads(2)
    assert _blas_threads_seen_in_a_fit(784, 256, (256, 128), batch_size=128, epochs=1) == {1}
    assert count_slices  # the first layer's products were split
    assert set(blas_threads()) == {4}


def test_a_small_network_fits_on_one_blas_thread_and_hands_it_back(threads, fresh_blas_clock):
    threads(2)
    assert _blas_threads_seen_in_a_fit(64, 400, (128, 64), batch_size=200, epochs=2) == {1}
    assert set(blas_threads()) == {4}


def test_a_count_set_while_held_is_not_overwritten(threads):
    threads(2)
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    parallel.parallel_slices(4, lambda a, b: None, uses_blas=True)
    with threadpool_limits(limits=3, user_api="blas"):
        parallel.release_blas()
        assert set(blas_threads()) == {3}


def _split_in_child(queue):
    queue.put(parallel.parallel_slices(6, lambda a, b: (a, b)))


def test_a_forked_child_can_split_work(threads):
    import multiprocessing

    threads(2)
    parallel.parallel_slices(6, lambda a, b: (a, b))  # the parent's pool exists before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_split_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in parallel_slices")
    assert child.exitcode == 0 and queue.get(timeout=5) == [(0, 3), (3, 6)]


# -- the ops: one thread and two give the same numbers ----------------------------------------------
def _assert_same_up_to_float32_rounding(one, two):
    # Slices multiply fewer rows per BLAS call, and BLAS may pick another kernel (another summation
    # order) for a smaller product: equal up to float32 rounding, not always bit for bit.
    scale = float(numpy.abs(one).max())
    numpy.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6 * scale)


def _cnn_step_results():
    """Forward value and every gradient of a small CNN step large enough for every op to split."""
    rng = numpy.random.default_rng(0)
    x = fl.tensor(rng.standard_normal((64, 28, 28, 1)))
    kernels = [fl.tensor(rng.standard_normal(shape) * 0.1, requires_grad=True)
               for shape in [(5, 5, 1, 32), (5, 5, 32, 64)]]
    biases = [fl.tensor(rng.standard_normal(n), requires_grad=True) for n in (32, 64)]
    dense = fl.tensor(rng.standard_normal((7 * 7 * 64, 512)) * 0.01, requires_grad=True)
    out = fl.tensor(rng.standard_normal((512, 10)) * 0.1, requires_grad=True)
    h = ops.max_pool2d(ops.relu(ops.conv2d(x, kernels[0], padding="same") + biases[0]), 2)
    h = ops.avg_pool2d(ops.relu(ops.conv2d(h, kernels[1], padding="same") + biases[1]), 3, strides=2,
                       padding="same")
    logits = ops.relu(h.reshape((64, -1)) @ dense) @ out
    loss = losses.sparse_softmax_cross_entropy(fl.tensor(rng.integers(0, 10, 64)), logits)
    loss.backward()
    params = kernels + biases + [dense, out]
    return [loss.numpy()] + [p.grad.copy() for p in params]


def test_a_cnn_step_is_the_same_on_one_thread_and_on_two(threads):
    threads(1)
    serial = _cnn_step_results()
    threads(2)
    split = _cnn_step_results()
    for one, two in zip(serial, split):
        _assert_same_up_to_float32_rounding(one, two)


def test_conv2d_transpose_is_the_same_on_one_thread_and_on_two(threads):
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((50, 14, 14, 32)).astype(numpy.float32)
    kernel = rng.standard_normal((4, 4, 16, 32)).astype(numpy.float32)
    results = []
    for count in (1, 2):
        threads(count)
        xt, kt = fl.tensor(x, requires_grad=True), fl.tensor(kernel, requires_grad=True)
        y = ops.conv2d_transpose(xt, kt, strides=2, padding="same")
        (y * y).sum().backward()
        results.append((y.numpy(), xt.grad.copy(), kt.grad.copy()))
    for one, two in zip(*results):
        _assert_same_up_to_float32_rounding(one, two)


@pytest.mark.parametrize("make", [lambda: optimizers.Adam(1e-3, amsgrad=True), lambda: optimizers.SGD(0.1, momentum=0.9),
                                  lambda: optimizers.RMSProp(1e-3), lambda: optimizers.AdamW(1e-3)])
def test_large_parameter_updates_are_the_same_on_one_thread_and_on_two(make, threads):
    rng = numpy.random.default_rng(2)
    start = rng.standard_normal((1024, 700)).astype(numpy.float32)  # above the slice threshold
    grads = [rng.standard_normal(start.shape).astype(numpy.float32) for _ in range(3)]
    results = []
    for count in (1, 2):
        threads(count)
        param, optimizer = fl.tensor(start.copy(), requires_grad=True), make()
        for grad in grads:
            param.grad = grad
            optimizer.step([param])
        results.append(param.numpy())
    numpy.testing.assert_array_equal(results[0], results[1])  # element-wise: bit for bit
    assert not numpy.array_equal(results[0], start)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_overlapping_pooling_is_the_same_on_one_thread_and_on_two(pool, threads):
    rng = numpy.random.default_rng(3)
    x = rng.standard_normal((40, 28, 28, 32)).astype(numpy.float32)
    x[:, :8] = 0.0  # blank rows: whole windows tie, and the first maximum must win on every thread
    op = ops.max_pool2d if pool == "max" else ops.avg_pool2d
    results = []
    for count in (1, 2):
        threads(count)
        xt = fl.tensor(x, requires_grad=True)
        y = op(xt, 3, strides=2, padding="same")
        (y * y).sum().backward()
        results.append((y.numpy(), xt.grad.copy()))
    for one, two in zip(*results):
        numpy.testing.assert_array_equal(one, two)  # no products: the same sums in the same order


@pytest.mark.parametrize("shape, split, slices", [
    ((40, 30, 20), False, 0),         # small: BLAS
    ((128, 256, 256), False, 0),      # mid-sized: BLAS
    ((300, 400, 500), False, 2),      # from 16 M multiply-adds: split over output columns
    ((40, 2500, 3000), False, 2),     # large, wide: split over output columns
    ((2500, 3000, 40), False, 2),     # large, tall: split over output rows
    ((100, 200, 300), True, 0),       # 6 M, part of an op that splits anyway: BLAS
    ((100, 200, 400), True, 2),       # 8 M, part of an op that splits anyway: split
    ((25, 78400, 32), True, 2),       # a tiny output over a long inner dimension: partial sums
])
def test_gemm_matches_numpy_in_every_size_regime(shape, split, slices, threads, count_slices):
    from flowlearn.core.ops import _gemm

    threads(2)
    m, k, n = shape
    rng = numpy.random.default_rng(4)
    a = rng.standard_normal((m, k)).astype(numpy.float32)
    b = rng.standard_normal((n, k)).astype(numpy.float32).T  # a transposed operand, as backward passes
    expected = a.astype(numpy.float64) @ b.astype(numpy.float64)
    out = numpy.empty((m, n), numpy.float32)
    assert _gemm.gemm(numpy, a, b, out=out, split=split) is out
    assert len(count_slices) == slices
    numpy.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * numpy.sqrt(k))


@pytest.mark.parametrize("elementwise", [False, True])
def test_only_optimizers_that_say_so_update_in_slices(elementwise, threads):
    threads(2)
    seen = []

    class ScaledByNorm(optimizers.SGD):
        # A custom rule that needs the whole parameter at once (its norm): must not be sliced.
        elementwise_update = elementwise

        def _update(self, xp, param, grad, slots, tmp, constants):
            seen.append(param.shape)
            param -= constants * grad / float(xp.linalg.norm(grad))

    param = fl.tensor(numpy.ones((1024, 700), numpy.float32), requires_grad=True)
    param.grad = numpy.ones((1024, 700), numpy.float32)
    ScaledByNorm(0.1).step([param])
    assert seen == ([(358400,), (358400,)] if elementwise else [(1024, 700)])


# -- importing flowlearn changes no process-wide state ----------------------------------------------
_SPY_ON_LIBC = """
import ctypes, json, os, sys
opened = []
real = ctypes.CDLL
def spy(name, *args, **kwargs):
    opened.append(str(name))
    return real(name, *args, **kwargs)
ctypes.CDLL = spy
import flowlearn
from flowlearn.core import backend
if os.environ.get("CALL_TUNE_MALLOC"):
    assert flowlearn.backend.tune_malloc() is backend.MALLOC_TUNED
print(json.dumps({"libc": [n for n in opened if "libc.so" in n], "tuned": backend.MALLOC_TUNED,
                  "threadpoolctl": "threadpoolctl" in sys.modules}))
"""


def _import_in_fresh_process(**env):
    import json
    import os
    import subprocess
    import sys

    environment = {key: value for key, value in os.environ.items() if key != "FLOWLEARN_TUNE_MALLOC"}
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", _SPY_ON_LIBC], capture_output=True, text=True, env=environment,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_flowlearn_leaves_malloc_and_blas_alone():
    seen = _import_in_fresh_process()
    assert seen == {"libc": [], "tuned": False, "threadpoolctl": False}


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_malloc_tuning_is_opt_in_through_the_environment():
    seen = _import_in_fresh_process(FLOWLEARN_TUNE_MALLOC="1")
    assert seen["libc"] == ["libc.so.6"]
    assert seen["tuned"] is True  # False on a Linux without glibc: then this test has nothing to check
    with pytest.raises(AssertionError, match="FLOWLEARN_TUNE_MALLOC must be 0 or 1; got 'yes'"):
        _import_in_fresh_process(FLOWLEARN_TUNE_MALLOC="yes")
    assert _import_in_fresh_process(FLOWLEARN_TUNE_MALLOC="0")["libc"] == []


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_malloc_tuning_is_opt_in_through_a_call():
    seen = _import_in_fresh_process(CALL_TUNE_MALLOC="1")
    assert seen["libc"] == ["libc.so.6"] and seen["tuned"] is True
