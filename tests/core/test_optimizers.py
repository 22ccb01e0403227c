"""Optimizers: PyTorch parity, Keras formulas, clipping, schedules, state round trips, errors."""
import io
import json
import math

import numpy
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

import flowlearn as fl
from flowlearn.core import optimizers
from flowlearn.core.optimizers import schedules

SHAPES = [(4, 3), (3,), (2, 3, 2)]


def _problem(seed=0, steps=6):
    """Initial values and a gradient sequence with magnitudes in [0.2, 2]: far enough from zero
    that Keras's and PyTorch's epsilon placements agree to well under rtol 1e-4."""
    rng = numpy.random.default_rng(seed)
    init = [rng.standard_normal(shape).astype(numpy.float32) for shape in SHAPES]
    grads = [
        [(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)).astype(numpy.float32) for shape in SHAPES]
        for _ in range(steps)
    ]
    return init, grads


def _params(init, device):
    return [fl.tensor(array.copy(), requires_grad=True, device=device) for array in init]


def _set_grads(params, grads):
    for param, grad in zip(params, grads):
        param.grad = _like(param, grad)


def _like(param, array):
    """``array`` on the device of ``param`` (a fresh copy)."""
    return fl.tensor(array.copy(), device=param.device).data


def _run(optimizer, params, grads):
    for step_grads in grads:
        _set_grads(params, step_grads)
        optimizer.step(params)
    return [p.numpy() for p in params]


# -- PyTorch parity -------------------------------------------------------------------------------
PARITY = {
    "sgd": (lambda: optimizers.SGD(0.1), lambda ps, t: t.SGD(ps, lr=0.1)),
    "sgd_momentum": (lambda: optimizers.SGD(0.1, momentum=0.9), lambda ps, t: t.SGD(ps, lr=0.1, momentum=0.9)),
    "sgd_nesterov": (
        lambda: optimizers.SGD(0.05, momentum=0.8, nesterov=True),
        lambda ps, t: t.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
    ),
    "adam": (lambda: optimizers.Adam(0.01), lambda ps, t: t.Adam(ps, lr=0.01, eps=1e-7)),
    # epsilon = 0 removes the one place where Keras and PyTorch differ: exact same formula.
    "adam_betas_eps0": (
        lambda: optimizers.Adam(0.05, beta_1=0.8, beta_2=0.99, epsilon=0.0),
        lambda ps, t: t.Adam(ps, lr=0.05, betas=(0.8, 0.99), eps=0.0),
    ),
    "adam_amsgrad": (
        lambda: optimizers.Adam(0.02, amsgrad=True), lambda ps, t: t.Adam(ps, lr=0.02, eps=1e-7, amsgrad=True),
    ),
    "adamw": (
        lambda: optimizers.AdamW(0.01, weight_decay=0.1),
        lambda ps, t: t.AdamW(ps, lr=0.01, weight_decay=0.1, eps=1e-7),
    ),
    "adamw_default_decay": (
        lambda: optimizers.AdamW(0.01), lambda ps, t: t.AdamW(ps, lr=0.01, weight_decay=0.004, eps=1e-7),
    ),
    "rmsprop": (lambda: optimizers.RMSProp(0.01), lambda ps, t: t.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-7)),
    "rmsprop_centered": (
        lambda: optimizers.RMSProp(0.01, centered=True),
        lambda ps, t: t.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-7, centered=True),
    ),
    "rmsprop_momentum": (
        lambda: optimizers.RMSProp(0.01, rho=0.8, momentum=0.9),
        lambda ps, t: t.RMSprop(ps, lr=0.01, alpha=0.8, eps=1e-7, momentum=0.9),
    ),
    "rmsprop_centered_momentum": (
        lambda: optimizers.RMSProp(0.01, momentum=0.5, centered=True),
        lambda ps, t: t.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-7, momentum=0.5, centered=True),
    ),
    "adagrad": (
        lambda: optimizers.Adagrad(0.1),
        lambda ps, t: t.Adagrad(ps, lr=0.1, initial_accumulator_value=0.1, eps=1e-7),
    ),
}


@pytest.mark.parametrize("case", sorted(PARITY))
def test_matches_torch(case, device):
    make_ours, make_theirs = PARITY[case]
    init, grads = _problem()
    ours = _params(init, device)
    theirs = [torch.tensor(array.copy(), requires_grad=True) for array in init]
    optimizer, reference = make_ours(), make_theirs(theirs, torch.optim)
    for step_grads in grads:
        _set_grads(ours, step_grads)
        for param, grad in zip(theirs, step_grads):
            param.grad = torch.from_numpy(grad.copy())
        optimizer.step(ours)
        reference.step()
        for mine, other in zip(ours, theirs):
            assert mine.dtype == numpy.float32
            assert_allclose(mine.numpy(), other.detach().numpy(), rtol=1e-4, atol=1e-6)
    assert optimizer.iterations == len(grads)


# -- Keras formulas where PyTorch differs (epsilon placement), one step by hand -------------------
def _one_step(optimizer, grad, device, start=1.0):
    w = fl.tensor(numpy.full(3, start, numpy.float32), requires_grad=True, device=device)
    w.grad = _like(w, numpy.asarray(grad, numpy.float32))
    optimizer.step([w])
    return w.numpy()


def test_adam_epsilon_is_added_to_sqrt_of_uncorrected_v(device):
    g = numpy.array([0.5, -1.0, 2.0], numpy.float32)
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 0.05
    alpha = lr * math.sqrt(1 - b2) / (1 - b1)
    expected = 1.0 - alpha * (1 - b1) * g / (numpy.sqrt((1 - b2) * g * g) + eps)
    assert_allclose(_one_step(optimizers.Adam(lr, epsilon=eps), g, device), expected, rtol=1e-5)


def test_rmsprop_and_adagrad_put_epsilon_inside_sqrt(device):
    g = numpy.array([0.5, -1.0, 2.0], numpy.float32)
    expected = 1.0 - 0.1 * g / numpy.sqrt(0.1 * g * g + 0.5)
    assert_allclose(_one_step(optimizers.RMSProp(0.1, epsilon=0.5), g, device), expected, rtol=1e-5)
    expected = 1.0 - 0.1 * g / numpy.sqrt(0.1 + g * g + 0.5)
    assert_allclose(_one_step(optimizers.Adagrad(0.1, epsilon=0.5), g, device), expected, rtol=1e-5)


def test_weight_decay_is_decoupled_for_any_optimizer(device):
    got = _one_step(optimizers.SGD(0.1, weight_decay=0.5), [1.0, 0.0, -1.0], device, start=2.0)
    assert_allclose(got, 2.0 * (1 - 0.1 * 0.5) - 0.1 * numpy.array([1.0, 0.0, -1.0]), rtol=1e-6)


# -- minimize -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_minimize_converges_on_a_quadratic(name, device):
    target = fl.tensor([1.5, -2.0, 0.5], device=device)
    w = fl.tensor(numpy.zeros(3, numpy.float32), requires_grad=True, device=device)
    lr = {"sgd": 0.1, "adagrad": 0.5}.get(name, 0.05)
    optimizer = optimizers.get(name, learning_rate=lr)
    for _ in range(400):
        optimizer.minimize(lambda: ((w - target) * (w - target)).sum(), [w])
    assert_allclose(w.numpy(), target.numpy(), atol=2e-2)
    assert optimizer.iterations == 400


def test_minimize_clears_previous_gradients():
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    w.grad = numpy.array([100.0, 100.0], numpy.float32)  # stale, from another loss
    loss = (w * w).sum()
    returned = optimizers.SGD(0.1).minimize(loss, [w])
    assert returned.loss is loss
    assert_allclose(w.grad, [2.0, 4.0])
    assert_allclose(w.numpy(), [0.8, 1.6], rtol=1e-6)


# -- step mechanics -------------------------------------------------------------------------------
def test_params_without_grad_are_skipped_and_zero_grad_clears():
    a, b = fl.tensor([1.0], requires_grad=True), fl.tensor([1.0], requires_grad=True)
    a.grad = numpy.array([1.0], numpy.float32)
    optimizer = optimizers.Adam(0.1)
    optimizer.step([a, b])
    assert a.item() != 1.0 and b.item() == 1.0
    assert list(optimizer.state_dict()["slots"]) == ["0/m", "0/v"]
    optimizer.zero_grad([a, b])
    assert a.grad is None and b.grad is None


def test_update_is_in_place_at_the_parameter_dtype(device):
    w = fl.tensor(numpy.ones(4, numpy.float32), requires_grad=True, device=device)
    data = w.data
    w.grad = fl.tensor(numpy.full(4, 0.25), dtype="float64", device=device).data  # must not upcast the weight
    optimizer = optimizers.Adam(0.1)
    optimizer.step([w])
    assert w.data is data and w.dtype == numpy.float32
    assert all(array.dtype == numpy.float32 for array in optimizer.state_dict()["slots"].values())


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "adagrad"])
@pytest.mark.parametrize("clip", [{}, {"clipnorm": 0.1}, {"clipvalue": 0.1}, {"global_clipnorm": 0.1}])
def test_shared_gradient_array_is_not_corrupted(name, clip, device):
    """Two parameters holding the very same gradient array (as ``a + b`` produces) end up
    updated as if each had its own copy, and the array is unchanged."""
    grad = numpy.array([0.5, -1.5, 2.0], numpy.float32)
    kwargs = {"momentum": 0.9} if name == "sgd" else {}
    shared_params = _params([numpy.ones(3, numpy.float32)] * 2, device)
    shared = _like(shared_params[0], grad)
    separate_params = _params([numpy.ones(3, numpy.float32)] * 2, device)
    shared_opt = optimizers.get(name, learning_rate=0.1, **kwargs, **clip)
    separate_opt = optimizers.get(name, learning_rate=0.1, **kwargs, **clip)
    for _ in range(3):
        for param in shared_params:
            param.grad = shared
        _set_grads(separate_params, [grad, grad])
        shared_opt.step(shared_params)
        separate_opt.step(separate_params)
    assert_array_equal(fl.tensor(shared).numpy(), grad)
    for mine, other in zip(shared_params, separate_params):
        assert_array_equal(mine.numpy(), other.numpy())


def test_read_only_gradients_from_backward_are_fine(device):
    a = fl.tensor([1.0, 2.0], requires_grad=True, device=device)
    b = fl.tensor([3.0, 4.0], requires_grad=True, device=device)
    (a + b).sum().backward()  # both get one read-only broadcast array
    optimizer = optimizers.Adam(0.1, clipnorm=0.5)
    optimizer.step([a, b])
    assert_allclose(fl.tensor(a.grad).numpy(), [1.0, 1.0])
    assert_allclose(b.numpy() - a.numpy(), [2.0, 2.0], rtol=1e-6)


def test_gradient_of_wrong_shape_is_reported():
    w = fl.tensor([1.0, 2.0], requires_grad=True, name="dense/kernel")
    w.grad = numpy.ones(3, numpy.float32)
    with pytest.raises(ValueError, match=r"dense/kernel.*shape \(2,\).*gradient has shape \(3,\)"):
        optimizers.SGD().step([w])
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optimizers.SGD().step([w.data])


def test_state_is_per_parameter_object():
    a = fl.tensor([1.0], requires_grad=True)
    optimizer = optimizers.SGD(0.1, momentum=0.5)
    a.grad = numpy.array([1.0], numpy.float32)
    optimizer.step([a])
    b = fl.tensor([1.0], requires_grad=True)  # a new parameter: fresh velocity
    b.grad = numpy.array([1.0], numpy.float32)
    optimizer.step([b, a])
    assert_allclose(b.numpy(), [0.9])
    assert_allclose(a.numpy(), [1.0 - 0.1 - 0.15])
    optimizer.step([b])  # the optimizer keeps the list of the last step only
    del a
    assert len(optimizer._state) == 1  # the state of a garbage-collected parameter goes with it


# -- clipping -------------------------------------------------------------------------------------
def _clip_step(grads, device, **clip):
    params = [fl.tensor(numpy.zeros(len(g), numpy.float32), requires_grad=True, device=device) for g in grads]
    _set_grads(params, [numpy.asarray(g, numpy.float32) for g in grads])
    optimizers.SGD(1.0, **clip).step(params)
    return [-p.numpy() for p in params]


def test_clipvalue_clips_each_element(device):
    applied = _clip_step([[3.0, -0.2, -7.0]], device, clipvalue=1.0)
    assert_allclose(applied[0], [1.0, -0.2, -1.0])


def test_clipnorm_rescales_each_gradient_on_its_own(device):
    big, small = [3.0, 4.0], [0.3, 0.4]  # norms 5 and 0.5
    applied = _clip_step([big, small], device, clipnorm=1.0)
    assert_allclose(applied[0], [0.6, 0.8], rtol=1e-6)
    assert_allclose(applied[1], small, rtol=1e-6)


def test_global_clipnorm_rescales_all_gradients_together(device):
    grads = [[3.0, 0.0], [0.0, 4.0, 12.0]]  # global norm 13
    applied = _clip_step(grads, device, global_clipnorm=2.6)
    assert_allclose(applied[0], [0.6, 0.0], rtol=1e-6)
    assert_allclose(applied[1], [0.0, 0.8, 2.4], rtol=1e-6)
    assert_allclose(_clip_step(grads, device, global_clipnorm=20.0)[1], grads[1])  # under the limit: untouched


def test_only_one_clipping_argument():
    with pytest.raises(ValueError, match="only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        optimizers.Adam(clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(ValueError, match="clipnorm"):
        optimizers.Adam(clipnorm=0.0)


# -- learning rate and schedules ------------------------------------------------------------------
def test_schedule_values():
    decay = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert decay(0) == 0.1
    assert decay(5) == pytest.approx(0.1 * 0.5 ** 0.5)
    assert decay(20) == pytest.approx(0.025)
    stairs = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert [stairs(s) for s in (0, 9, 10, 19, 25)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    step = schedules.StepDecay(1.0, step_size=3, gamma=0.1)
    assert [step(s) for s in range(7)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01])
    assert schedules.Constant(0.3)(12345) == 0.3


@pytest.mark.parametrize("schedule", [
    schedules.Constant(0.3),
    schedules.ExponentialDecay(0.1, 7, 0.9, staircase=True),
    schedules.StepDecay(0.2, 5, 0.5),
])
def test_schedule_config_round_trip(schedule):
    config = json.loads(json.dumps(schedules.serialize(schedule)))
    restored = schedules.deserialize(config)
    assert type(restored) is type(schedule)
    assert [restored(s) for s in range(20)] == [schedule(s) for s in range(20)]


def test_optimizer_reads_schedule_at_iterations(device):
    schedule = schedules.StepDecay(1.0, step_size=2, gamma=0.5)
    optimizer = optimizers.SGD(schedule)
    w = fl.tensor([0.0], requires_grad=True, device=device)
    rates = []
    for _ in range(5):
        rates.append(optimizer.current_learning_rate)
        w.grad = _like(w, numpy.array([1.0], numpy.float32))
        optimizer.step([w])
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert_allclose(w.numpy(), [-sum(rates)])
    assert optimizer.learning_rate is schedule


def test_learning_rate_is_settable():
    optimizer = optimizers.Adam(0.01)
    optimizer.learning_rate = 0.002
    assert optimizer.current_learning_rate == 0.002
    assert optimizer.get_config()["learning_rate"] == 0.002
    optimizer.learning_rate = schedules.Constant(0.5)
    assert optimizer.current_learning_rate == 0.5
    assert optimizer.get_config()["learning_rate"] == {"class_name": "Constant", "config": {"learning_rate": 0.5}}


@pytest.mark.parametrize("bad, error", [
    (-0.1, ValueError), (float("nan"), ValueError), ("fast", TypeError), (True, TypeError), (None, TypeError),
])
def test_bad_learning_rate(bad, error):
    with pytest.raises(error, match="learning_rate"):
        optimizers.SGD(bad)
    optimizer = optimizers.SGD()
    with pytest.raises(error, match="learning_rate"):
        optimizer.learning_rate = bad


@pytest.mark.parametrize("make, match", [
    (lambda: optimizers.SGD(momentum=-0.1), r"`momentum`.*\[0.0, 1.0\].*momentum=-0.1"),
    (lambda: optimizers.SGD(momentum=1.5), r"`momentum`.*momentum=1.5"),
    (lambda: optimizers.SGD(nesterov="yes"), "nesterov"),
    (lambda: optimizers.RMSProp(momentum=2.0), "momentum"),
    (lambda: optimizers.RMSProp(rho=1.0), "rho"),
    (lambda: optimizers.Adam(beta_1=1.0), "beta_1"),
    (lambda: optimizers.Adam(epsilon=-1e-7), "epsilon"),
    (lambda: optimizers.Adagrad(initial_accumulator_value=-1), "initial_accumulator_value"),
    (lambda: optimizers.AdamW(weight_decay=None), "weight_decay"),
    (lambda: schedules.ExponentialDecay(0.1, decay_steps=0, decay_rate=0.5), "decay_steps"),
    (lambda: schedules.StepDecay(0.1, step_size=1.5), "step_size"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_hyperparameter_of_wrong_type():
    with pytest.raises(TypeError, match=r"expected a number for `momentum`; got momentum='0.9'"):
        optimizers.SGD(momentum="0.9")


# -- get / config ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [
    ("sgd", optimizers.SGD), ("gradient_descent", optimizers.SGD), ("GradientDescent", optimizers.SGD),
    ("Adam", optimizers.Adam), ("ADAMW", optimizers.AdamW), ("rmsprop", optimizers.RMSProp),
    ("RMSprop", optimizers.RMSProp), ("adagrad", optimizers.Adagrad),
])
def test_get_by_name(name, cls):
    assert type(optimizers.get(name)) is cls


def test_get_overrides_instances_and_errors():
    assert optimizers.get("sgd", learning_rate=0.5, momentum=0.9).momentum == 0.9
    instance = optimizers.RMSProp()
    assert optimizers.get(instance) is instance
    assert optimizers.GradientDescent is optimizers.SGD
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adamm'.*'adagrad'.*'gradient_descent'.*'sgd'"):
        optimizers.get("adamm")
    with pytest.raises(TypeError, match="only apply when the optimizer is given by name"):
        optimizers.get(instance, learning_rate=0.1)
    with pytest.raises(TypeError, match="expected an optimizer name"):
        optimizers.get(3)


@pytest.mark.parametrize("optimizer", [
    optimizers.SGD(0.2, momentum=0.5, nesterov=True, clipvalue=1.0),
    optimizers.Adam(schedules.ExponentialDecay(0.01, 100, 0.9), beta_2=0.99, amsgrad=True),
    optimizers.AdamW(0.003, weight_decay=0.01, global_clipnorm=5.0),
    optimizers.RMSProp(0.01, momentum=0.1, centered=True, clipnorm=2.0),
    optimizers.Adagrad(0.05, initial_accumulator_value=0.2),
])
def test_config_round_trip(optimizer):
    config = json.loads(json.dumps(optimizers.serialize(optimizer)))
    restored = optimizers.get(config)
    assert type(restored) is type(optimizer)
    assert restored.get_config() == optimizer.get_config()


def test_custom_subclass_round_trips_through_config():
    class HalvingSGD(optimizers.SGD):
        def _prepare(self, lr, t):
            return lr / 2

    restored = optimizers.deserialize(optimizers.serialize(HalvingSGD(0.4)))
    assert type(restored) is HalvingSGD
    assert _one_step(restored, [1.0, 1.0, 1.0], "cpu") == pytest.approx([0.8] * 3)


# -- state_dict -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: optimizers.Adam(schedules.ExponentialDecay(0.01, 2, 0.8), amsgrad=True, clipnorm=1.0),
    lambda: optimizers.AdamW(0.01, weight_decay=0.05),
    lambda: optimizers.RMSProp(0.01, momentum=0.9, centered=True),
    lambda: optimizers.Adagrad(0.1, global_clipnorm=2.0),
])
def test_state_dict_round_trip_resumes_identically(make, device):
    init, grads = _problem(seed=1, steps=6)
    params = _params(init, device)
    optimizer = make()
    _run(optimizer, params, grads[:3])
    state = optimizer.state_dict()
    midway = [p.numpy().copy() for p in params]
    # Save as JSON + npz, load with allow_pickle=False: no pickle anywhere.
    config_text = json.dumps(state["config"])
    buffer = io.BytesIO()
    numpy.savez(buffer, **{key.replace("/", "__"): value for key, value in state["slots"].items()})
    buffer.seek(0)
    with numpy.load(buffer, allow_pickle=False) as archive:
        slots = {key.replace("__", "/"): archive[key] for key in archive.files}
    expected = _run(optimizer, params, grads[3:])

    config = json.loads(config_text)
    restored = optimizers.get({"class_name": config["class_name"], "config": config["config"]})
    resumed = _params(midway, device)
    restored.load_state_dict({"config": config, "slots": slots}, resumed)
    assert restored.iterations == 3
    got = _run(restored, resumed, grads[3:])
    for mine, other in zip(got, expected):
        assert_array_equal(mine, other)


def test_state_dict_is_a_snapshot_and_params_can_be_explicit():
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    optimizer = optimizers.Adam(0.1)
    w.grad = numpy.array([1.0, 1.0], numpy.float32)
    optimizer.step([w])
    state = optimizer.state_dict()
    saved = state["slots"]["0/m"].copy()
    optimizer.step([w])
    assert_array_equal(state["slots"]["0/m"], saved)
    assert list(optimizer.state_dict([fl.tensor([0.0]), w])["slots"]) == ["1/m", "1/v"]


def test_load_state_dict_errors():
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    w.grad = numpy.array([1.0, 1.0], numpy.float32)
    optimizer = optimizers.Adam(0.1)
    optimizer.step([w])
    state = optimizer.state_dict()
    with pytest.raises(ValueError, match="saved by 'Adam'; expected 'SGD'"):
        optimizers.SGD().load_state_dict(state, [w])
    with pytest.raises(ValueError, match=r"slot '0/m' has shape \(2,\); parameter 0 has shape \(3,\)"):
        optimizers.Adam().load_state_dict(state, [fl.tensor([1.0, 2.0, 3.0])])
    with pytest.raises(ValueError, match="unexpected slot '0/m'.*index below 0"):
        optimizers.Adam().load_state_dict(state, [])


def test_load_state_dict_restores_hyperparameters():
    w = fl.tensor([1.0], requires_grad=True)
    w.grad = numpy.array([1.0], numpy.float32)
    source = optimizers.RMSProp(0.01, momentum=0.5)
    source.step([w])
    source.learning_rate = 0.001  # e.g. reduced by ReduceLROnPlateau
    target = optimizers.RMSProp()
    target.load_state_dict(source.state_dict(), [w])
    assert target.get_config() == source.get_config()
    assert target.iterations == 1


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_step_bumps_the_version_of_each_updated_parameter_once(name):
    # The version is what backward checks: a graph recorded before the step must see the update.
    updated = fl.tensor([1.0, 2.0], requires_grad=True)
    skipped = fl.tensor([3.0], requires_grad=True)
    updated.grad = numpy.array([0.5, -0.5], dtype=numpy.float32)
    opt = optimizers.get(name, learning_rate=0.1)
    opt.step([updated, skipped])
    assert (updated._version, skipped._version) == (1, 0)
    updated.grad = numpy.array([0.5, -0.5], dtype=numpy.float32)
    opt.step([updated, skipped])
    assert (updated._version, skipped._version) == (2, 0)
