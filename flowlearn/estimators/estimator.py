"""The model_fn Estimator: ``tf.estimator.Estimator``'s programming model, run eagerly on flowlearn.

A *model_fn* ``model_fn(features, labels, mode, params)`` builds the model with the functional layers
(``fl.layers.dense(x, 10)``), computes the loss and, in TRAIN mode, applies one update with
``optimizer.minimize(loss, global_step=fl.train.get_global_step())``; it returns an
:class:`~flowlearn.estimators.EstimatorSpec`. The Estimator calls it once per batch inside
``fl.variable_scope`` of its own :class:`~flowlearn.layers.VariableStore`, so the layers, the optimizer's
slots and the global step persist from call to call, and in ``fl.training_mode(mode == TRAIN)``, so
dropout and batch normalization follow the mode.

Training runs on :func:`flowlearn.layers.training.run_training`, the loop of ``Sequential.fit`` and the
scikit-learn estimators; checkpoints (every variable, optimizer slot, the global step and the
Estimator's random generators) and TensorBoard summaries are callbacks of that loop. Evaluation runs
on :func:`~flowlearn.layers.training.evaluate_batches`.

What the Estimator holds in memory is the state of the checkpoint it last saved or restored: evaluate
and predict reuse it, and reload only when ``model_dir`` has a newer checkpoint (another process
trained on).
"""
import inspect
import math
import logging
import numbers
import os
import re
import tempfile
import time
import warnings

import numpy

from ..core import backend, no_grad, training_mode
from ..core import config as core_config
from ..core.distribution import current_strategy
from ..core.parallel import hands_blas_back
from ..core.tensor import Tensor
from ..core.trace import trace
from ..io._signatures import receiver_signatures
from ..io.saved_model import export_saved_model as _export_saved_model
from ..layers import seeding
from ..layers.callbacks import Callback
from ..layers.training import NonFiniteLossError, batch_length, evaluate_batches, run_training
from ..layers.variable_scope import VariableStore, variable_scope
from ..train import get_or_create_global_step
from .run_config import RunConfig
from .spec import EstimatorSpec, ModeKeys, SpecError

__all__ = ["Estimator", "WarmStartSettings"]

logger = logging.getLogger("flowlearn.estimators")

_GLOBAL_STEP = "global_step"


class WarmStartSettings:
    """Where and what to warm-start from, as ``tf.estimator.WarmStartSettings``.

    Parameters
    ----------
    ckpt_to_initialize_from : str
        A model_dir (its latest checkpoint is used) or a checkpoint path.
    vars_to_warm_start : str or list of str, optional
        Regular expressions: the trainable variables whose names match one of them (``re.match``) start
        from the checkpoint's values; the default ``".*"`` takes every trainable variable. Optimizer slots
        and the global step always start afresh.
    """

    def __init__(self, ckpt_to_initialize_from, vars_to_warm_start=".*"):
        self.ckpt_to_initialize_from = os.fspath(ckpt_to_initialize_from)
        patterns = [vars_to_warm_start] if isinstance(vars_to_warm_start, str) else vars_to_warm_start
        try:
            self._patterns = [re.compile(pattern) for pattern in patterns]
        except (TypeError, re.error) as error:
            raise ValueError(
                "WarmStartSettings: expected `vars_to_warm_start` to be a regular expression or a list of them; "
                f"got {vars_to_warm_start!r} ({error})."
            ) from None
        self.vars_to_warm_start = vars_to_warm_start

    def matches(self, name):
        """Whether variable ``name`` is warm-started."""
        return any(pattern.match(name) for pattern in self._patterns)


def _checkpoint_module():
    from ..io import checkpoint

    return checkpoint


def _model_fn_arguments(model_fn):
    """The optional arguments (params, config) that ``model_fn`` accepts, checked as TensorFlow does."""
    if not callable(model_fn):
        raise TypeError(f"Estimator: expected `model_fn` to be callable; got {type(model_fn).__name__}.")
    parameters = inspect.signature(model_fn).parameters
    names = set(parameters)
    if "features" not in names and not any(p.kind is p.VAR_POSITIONAL for p in parameters.values()):
        raise ValueError(
            f"Estimator: model_fn {_name(model_fn)} must accept a `features` argument "
            "(model_fn(features, labels, mode, params)); its signature is "
            f"{inspect.signature(model_fn)}."
        )
    return {name for name in ("labels", "mode", "params", "config") if name in names}


def _name(function):
    return getattr(function, "__qualname__", None) or getattr(function, "__name__", None) or repr(function)


def _input_fn_names(input_fn):
    """Which of mode, params and config ``input_fn`` declares (TensorFlow passed those it asked for)."""
    if not callable(input_fn):
        raise TypeError(
            f"expected `input_fn` to be a callable returning an iterable of (features, labels) batches; got "
            f"{type(input_fn).__name__}."
        )
    try:
        names = inspect.signature(input_fn).parameters
    except (TypeError, ValueError):
        return ()
    return tuple(name for name in ("mode", "params", "config") if name in names)


def _check_steps(where, name, value):
    """``value`` is None or a whole number >= 1 (a string or a float such as 2.5 is refused by name)."""
    if value is None:
        return
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or int(value) != value or value < 1):
        raise ValueError(f"{where}: expected `{name}` to be a positive integer; got {name}={value!r}.")


def _resolve_checkpoint(source, what):
    """The checkpoint path of ``source``: a model_dir (its latest checkpoint) or a checkpoint file."""
    checkpoint = _checkpoint_module()
    source = os.fspath(source)
    if os.path.isdir(source):
        path = checkpoint.latest_checkpoint(source)
        if path is None:
            raise ValueError(f"{what}: the directory {source!r} holds no checkpoint.")
        return path
    return source


class _Generators:
    """The Estimator's own random generators (initial weights, dropout masks): seeded by
    ``tf_random_seed`` (or from flowlearn's module generators), saved in checkpoints and restored with them."""

    def __init__(self, seed):
        if seed is None:
            # Drawn from the module generator, so fl.layers.set_random_seed still makes a script reproducible.
            seed = int(seeding.weights_rng().integers(2 ** 63))
        weights, dropout = numpy.random.SeedSequence(seed).spawn(2)
        self.weights = numpy.random.default_rng(weights)
        self.dropout = numpy.random.default_rng(dropout)
        self._training = False
        self._saved = None

    def running(self, training):
        """Context of one model_fn call: the training flag set to ``training`` and our dropout generator lent
        to the layers (those without a seed of their own draw from the module's). One small object instead
        of two generator-based context managers: it runs once per batch."""
        self._training = training
        return self

    def __enter__(self):
        self._saved = (seeding._generators["dropout"], core_config.modes.training)
        seeding._generators["dropout"] = self.dropout
        core_config.modes.training = self._training

    def __exit__(self, *exc):
        seeding._generators["dropout"], core_config.modes.training = self._saved

    def state(self):
        return {"weights": self.weights.bit_generator.state, "dropout": self.dropout.bit_generator.state}

    def set_state(self, state):
        self.weights.bit_generator.state = state["weights"]
        self.dropout.bit_generator.state = state["dropout"]


def _as_numpy(value):
    if isinstance(value, Tensor):
        value = value.data
    return numpy.asarray(backend.to_numpy(value))


class Estimator:
    """Trains, evaluates and predicts with a model_fn, keeping its state in ``model_dir``.

    Parameters
    ----------
    model_fn : callable
        ``model_fn(features, labels, mode, params[, config]) -> EstimatorSpec``; ``labels``, ``mode``,
        ``params`` and ``config`` are passed when the function declares them.
    model_dir : str, optional
        Checkpoints and TensorBoard events go here; an existing checkpoint is resumed from. Defaults to
        ``config.model_dir``, else a new temporary directory (as TensorFlow).
    config : RunConfig, optional
    params : dict, optional
        Hyperparameters handed to ``model_fn``.
    warm_start_from : str or WarmStartSettings, optional
        A model_dir or checkpoint whose trainable variables initialise a model_dir with no checkpoint yet.

    Examples
    --------
    >>> import numpy as np, flowlearn as fl
    >>> from flowlearn.core import losses
    >>> from flowlearn.estimators import Estimator, EstimatorSpec, ModeKeys
    >>> from flowlearn.io import numpy_input_fn
    >>> def model_fn(features, labels, mode):
    ...     y = fl.layers.dense(features["x"], 1)
    ...     if mode == ModeKeys.PREDICT:
    ...         return EstimatorSpec(mode, predictions={"y": y})
    ...     loss = losses.mean_squared_error(labels, y)
    ...     train_op = fl.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=fl.train.get_global_step())
    ...     return EstimatorSpec(mode, loss=loss, train_op=train_op)
    >>> x = np.linspace(-1, 1, 64, dtype="float32").reshape(-1, 1)
    >>> est = Estimator(model_fn)  # a temporary model_dir
    >>> est = est.train(numpy_input_fn({"x": x}, 3 * x, batch_size=16, num_epochs=None, shuffle=True), steps=200)
    >>> est.evaluate(numpy_input_fn({"x": x}, 3 * x, shuffle=False))["global_step"]
    200
    """

    def __init__(self, model_fn, model_dir=None, config=None, params=None, warm_start_from=None):
        self._model_fn_args = _model_fn_arguments(model_fn)
        if config is None:
            config = RunConfig()
        elif not isinstance(config, RunConfig):
            raise TypeError(f"Estimator: expected `config` to be a RunConfig; got {type(config).__name__}.")
        if params is not None and not isinstance(params, dict):
            raise TypeError(f"Estimator: expected `params` to be a dict; got {type(params).__name__}.")
        if params and "params" not in self._model_fn_args:
            raise ValueError(
                f"Estimator: params were given ({sorted(params)}) but model_fn {_name(model_fn)} has no `params` "
                "argument to receive them."
            )
        if model_dir is not None and config.model_dir is not None and \
                os.path.abspath(os.fspath(model_dir)) != os.path.abspath(config.model_dir):
            raise ValueError(
                f"Estimator: `model_dir` ({os.fspath(model_dir)!r}) and config.model_dir ({config.model_dir!r}) "
                "differ; give one, or the same path twice."
            )
        model_dir = model_dir if model_dir is not None else config.model_dir
        if model_dir is None:
            model_dir = tempfile.mkdtemp(prefix="flowlearn_estimator_")
            logger.info("Estimator: using a temporary model_dir %s", model_dir)
        self._model_dir = os.fspath(model_dir)
        self._config = config.replace(model_dir=self._model_dir)
        self._params = dict(params or {})
        if warm_start_from is not None and not isinstance(warm_start_from, WarmStartSettings):
            warm_start_from = WarmStartSettings(warm_start_from)
        self._warm_start = warm_start_from
        self._model_fn = model_fn
        # The keyword arguments of each mode's model_fn call, built once (a call per batch).
        offered = {"params": self._params, "config": self._config}
        self._pass_labels = "labels" in self._model_fn_args
        self._fixed_kwargs = {
            mode: {**({"mode": mode} if "mode" in self._model_fn_args else {}),
                   **{name: value for name, value in offered.items() if name in self._model_fn_args}}
            for mode in ModeKeys.ALL
        }
        self._generators = _Generators(self._config.tf_random_seed)
        self._store = VariableStore()
        self._store._rng = self._generators.weights
        self._store.create_global_step()  # before any model_fn runs, as TensorFlow's Estimator does
        self._built = False  # True once model_fn has created the variables
        self._in_memory = None  # the checkpoint path whose state the store holds (None: none, or unsaved)
        self._input_fn_cache = (None, ())
        self._index_cache = (None, None)  # (stat of model_dir's checkpoint index, latest checkpoint path)
        self._last_train_op = None  # what the last TRAIN step's model_fn returned (its optimizer's learning rate)
        self._graph_written = False  # the inference graph went to model_dir's event file (once per Estimator)
        self.stop_training = False  # set by hooks (callbacks) to end train() early

    # -- properties -------------------------------------------------------------------------------
    @property
    def model_dir(self):
        """Where checkpoints and event files are kept."""
        return self._model_dir

    @property
    def config(self):
        """The :class:`RunConfig` (with ``model_dir`` filled in)."""
        return self._config

    @property
    def params(self):
        """A copy of the ``params`` handed to ``model_fn``."""
        return dict(self._params)

    @property
    def model_fn(self):
        return self._model_fn

    # -- running the model_fn ---------------------------------------------------------------------
    def _call_model_fn(self, features, labels, mode):
        kwargs = self._fixed_kwargs[mode]
        if self._pass_labels:
            kwargs = dict(kwargs, labels=labels)
        with variable_scope(self._store), self._generators.running(mode == ModeKeys.TRAIN):
            try:
                spec = self._model_fn(features, **kwargs)
            except SpecError as error:
                raise ValueError(f"model_fn {_name(self._model_fn)} in mode {mode!r}: {error}") from None
        if not isinstance(spec, EstimatorSpec):
            raise ValueError(
                f"model_fn {_name(self._model_fn)} must return an EstimatorSpec; in mode {mode!r} it returned "
                f"{type(spec).__name__}."
            )
        if spec.mode != mode:
            raise ValueError(
                f"model_fn {_name(self._model_fn)} was called in mode {mode!r} but returned an EstimatorSpec for "
                f"mode {spec.mode!r}."
            )
        return spec

    def _global_step_variable(self):
        return get_or_create_global_step(self._store)

    def _global_step(self):
        return int(self._global_step_variable().item())

    # -- state: what a checkpoint holds ---------------------------------------------------------------
    def _state(self):
        """Every variable (the global step included) and every optimizer slot, as numpy arrays."""
        state = self._store.get_weights()
        for name, array in self._store.slots.items():
            host = backend.to_numpy(array)
            state[name] = host.copy() if host is array else host
        return state

    def _metadata(self):
        return {"rng": self._generators.state(), "model_fn": _name(self._model_fn)}

    def _save(self, step):
        path = _checkpoint_module().save_checkpoint(
            self._model_dir, step, self._state(), keep_checkpoint_max=self._config.keep_checkpoint_max or 0,
            metadata=self._metadata(),
        )
        self._in_memory = path
        return path

    def _restore(self, path, mode):
        """Load ``path`` into the store (whose variables ``mode``'s model_fn has created)."""
        arrays, metadata = _checkpoint_module().load_checkpoint(path)
        _load_state(self._store, arrays, path, strict=(mode == ModeKeys.TRAIN))
        if metadata.get("rng"):
            self._generators.set_state(metadata["rng"])
        self._in_memory = path

    def _build(self, first_batch, mode):
        """Create the variables by running model_fn once on ``first_batch`` in EVAL mode (in PREDICT mode for
        predict), with no update applied, so that a checkpoint or a warm start can then be loaded into them."""
        build_mode = ModeKeys.PREDICT if mode == ModeKeys.PREDICT else ModeKeys.EVAL
        features, labels = first_batch
        with no_grad():
            self._call_model_fn(features, labels, build_mode)
        self._built = True

    def _prepare(self, first_batch, mode):
        """Bring the in-memory state up to the latest checkpoint of model_dir (building if needed)."""
        latest = self.latest_checkpoint()
        if latest is not None and latest == self._in_memory:
            return
        if latest is None:
            if mode != ModeKeys.TRAIN and self._in_memory is None and not self._trained_in_memory():
                raise ValueError(
                    f"Could not find a trained model in model_dir {self._model_dir!r}: train the Estimator first "
                    "(or point model_dir at a directory holding checkpoints)."
                )
            if not self._built and mode == ModeKeys.TRAIN and self._warm_start is not None:
                self._build(first_batch, mode)
                self._warm_start_now()
            return
        if not self._built:
            self._build(first_batch, mode)
        self._restore(latest, mode)

    def _trained_in_memory(self):
        return self._built and self._global_step() > 0

    def _warm_start_now(self):
        settings = self._warm_start
        path = _resolve_checkpoint(settings.ckpt_to_initialize_from, "Estimator(warm_start_from=...)")
        arrays, _ = _checkpoint_module().load_checkpoint(path)
        wanted = [w for w in self._store.trainable_variables if settings.matches(w.name)]
        missing = sorted(w.name for w in wanted if w.name not in arrays)
        shapes = sorted(f"{w.name}: {tuple(arrays[w.name].shape)} in the checkpoint, {w.shape} in the model"
                        for w in wanted if w.name in arrays and tuple(arrays[w.name].shape) != w.shape)
        if missing or shapes:
            raise ValueError(
                f"Estimator(warm_start_from={path!r}): the checkpoint does not match the model_fn's variables; "
                f"missing: {missing}, mis-shaped: {shapes}."
            )
        for w in wanted:
            w.assign(numpy.asarray(arrays[w.name], dtype=w.dtype))
        logger.info("Estimator: warm-started %d variables from %s", len(wanted), path)

    # -- input ------------------------------------------------------------------------------------
    def _batches(self, input_fn, mode):
        # inspect.signature costs more than a one-row prediction: remembered for the last input_fn.
        if self._input_fn_cache[0] is not input_fn:
            self._input_fn_cache = (input_fn, _input_fn_names(input_fn))
        offered = {"mode": mode, "params": self._params, "config": self._config}
        kwargs = {name: offered[name] for name in self._input_fn_cache[1]}
        from ..layers.data_adapter import iterate_batches

        source = input_fn(**kwargs) if kwargs else input_fn
        # iterate_batches checks every batch's structure (a (features, labels) tuple, features a non-empty
        # dict of arrays or an array, rows alike) as it comes; nothing is left to check here per batch.
        yield from iterate_batches(source)

    # -- train ------------------------------------------------------------------------------------
    def train(self, input_fn, steps=None, max_steps=None, hooks=None):
        """Train on the batches of ``input_fn`` until it runs out, ``steps`` more steps are done or the
        global step reaches ``max_steps``; returns ``self``.

        A checkpoint is saved every ``config.save_checkpoints_steps`` steps (or ``save_checkpoints_secs``
        seconds) and when training ends. A model_dir holding checkpoints is resumed from.

        Parameters
        ----------
        input_fn : callable
            Returns an iterable of ``(features, labels)`` batches (see :func:`flowlearn.io.numpy_input_fn`).
        steps : int, optional
            Train this many more steps.
        max_steps : int, optional
            Train until the global step reaches this (returns at once if it already has).
        hooks : list of Callback, optional
            :class:`flowlearn.callbacks.Callback` objects called around each step (``self.model`` is the
            Estimator; setting ``stop_training`` on it ends training after the step).
        """
        return self._train(input_fn, steps=steps, max_steps=max_steps, hooks=hooks)

    def _train(self, input_fn, steps=None, max_steps=None, hooks=None, after_save=None):
        """train(), with ``after_save(checkpoint_path, global_step)`` called after every checkpoint saved."""
        if steps is not None and max_steps is not None:
            raise ValueError(
                f"Estimator.train: give at most one of `steps` and `max_steps`; got steps={steps!r}, "
                f"max_steps={max_steps!r}."
            )
        _check_steps("Estimator.train", "steps", steps)
        _check_steps("Estimator.train", "max_steps", max_steps)
        hooks = list(hooks or [])
        for hook in hooks:
            if not isinstance(hook, Callback):
                raise TypeError(
                    f"Estimator.train: expected `hooks` to be flowlearn.callbacks.Callback objects; got "
                    f"{type(hook).__name__}."
                )
        if max_steps is not None:
            latest = self.latest_checkpoint()
            if latest is not None and (_checkpoint_module().checkpoint_step(latest) or 0) >= max_steps:
                logger.info("Estimator.train: the global step already reached max_steps=%d; nothing to do.", max_steps)
                return self
        strategy = self._config.train_distribute
        if strategy is not None:
            # An unseeded numpy_input_fn shuffles from this stream: rank 0's state makes every rank's batches alike.
            strategy.broadcast_generators([seeding.shuffle_rng()])
        batches = self._batches(input_fn, ModeKeys.TRAIN)
        first = next(batches, None)
        if first is None:
            raise ValueError("Estimator.train: input_fn yielded no batch.")
        self._prepare(first, ModeKeys.TRAIN)
        if strategy is not None and not self._built:
            self._build(first, ModeKeys.TRAIN)  # the variables must exist for rank 0's values to be broadcast
        start = self._global_step()
        if max_steps is not None:
            remaining = max_steps - start
        else:
            remaining = steps
        if remaining is not None and remaining <= 0:
            return self
        step = _TrainStep(self)
        callbacks = hooks + _training_callbacks(self, start, after_save, first[0])
        self._in_memory = None  # the weights are about to move away from every checkpoint
        run_training(step, _limited(first, batches, remaining), epochs=1, callbacks=callbacks, model=self,
                     terminate_on_nan=False, steps=remaining, strategy=strategy, variables=self._store.variables)
        return self

    # -- evaluate ---------------------------------------------------------------------------------
    def evaluate(self, input_fn, steps=None, name=None):
        """Evaluate on ``input_fn``'s batches (at most ``steps`` of them).

        Returns
        -------
        dict
            ``loss`` (the mean over the batches, weighted by batch size), every eval metric of the
            model_fn streamed over all batches, and ``global_step``.
        """
        _check_steps("Estimator.evaluate", "steps", steps)
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"Estimator.evaluate: expected `name` to be a non-empty string without '/'; got {name!r}.")
        batches = self._batches(input_fn, ModeKeys.EVAL)
        first = next(batches, None)
        if first is None:
            raise ValueError("Estimator.evaluate: input_fn yielded no batch.")
        self._prepare(first, ModeKeys.EVAL)
        metrics = _StreamedMetrics()

        def forward(batch):
            features, labels = batch
            spec = self._call_model_fn(features, labels, ModeKeys.EVAL)
            metrics.update(spec.eval_metric_ops)
            return spec.loss, None, None

        logs = evaluate_batches(forward, _limited(first, batches, steps))
        results = {"loss": logs["loss"], **metrics.results(), "global_step": self._global_step()}
        _write_eval_summaries(self, results, name)
        return results

    # -- predict ----------------------------------------------------------------------------------
    def predict(self, input_fn, predict_keys=None, yield_single_examples=True):
        """Yield the model_fn's predictions for ``input_fn``'s batches, as dicts of numpy arrays.

        Parameters
        ----------
        predict_keys : str or list of str, optional
            Only these keys of a dict of predictions.
        yield_single_examples : bool
            True: one dict per example; False: one dict per batch.
        """
        if isinstance(predict_keys, str):
            predict_keys = [predict_keys]
        batches = self._batches(input_fn, ModeKeys.PREDICT)
        first = next(batches, None)
        if first is None:
            return
        self._prepare(first, ModeKeys.PREDICT)
        yield from self._predict_batch(first, predict_keys, yield_single_examples)
        for batch in batches:
            yield from self._predict_batch(batch, predict_keys, yield_single_examples)

    def _predict_batch(self, batch, predict_keys, yield_single_examples):
        predictions = self._predictions(batch, predict_keys)
        if not yield_single_examples:
            yield predictions
            return
        n = len(next(iter(predictions.values())))
        for i in range(n):
            yield {key: value[i] for key, value in predictions.items()}

    @hands_blas_back
    def _predictions(self, batch, predict_keys):
        features, labels = batch
        with no_grad():
            spec = self._call_model_fn(features, labels, ModeKeys.PREDICT)
        predictions = spec.predictions
        single = not isinstance(predictions, dict)
        if single:
            predictions = {"predictions": predictions}
        if predict_keys is not None:
            unknown = sorted(set(predict_keys) - set(predictions))
            if unknown or single:
                raise ValueError(
                    f"Estimator.predict: predict_keys {unknown or list(predict_keys)} are not keys of the model_fn's "
                    f"predictions {sorted(predictions) if not single else '(a single array, not a dict)'}."
                )
            predictions = {key: predictions[key] for key in predict_keys}
        arrays = {key: _as_numpy(value) for key, value in predictions.items()}
        n = batch_length(features)
        for key, array in arrays.items():
            if array.ndim == 0 or len(array) != n:
                raise ValueError(
                    f"Estimator.predict: prediction {key!r} has shape {array.shape}; expected its first axis to be "
                    f"the batch's {n} examples."
                )
        return arrays

    # -- export -----------------------------------------------------------------------------------
    def export_saved_model(self, export_dir_base, serving_input_receiver_fn, *, as_text=None, debug_outputs=False):
        """Export the latest checkpoint's model as a SavedModel under ``export_dir_base/<timestamp>/``.

        The model_fn is traced once in PREDICT mode on the receiver's tensors; the SavedModel holds that
        graph and the variables it reads, so serving it needs neither the model_fn nor this class
        (:func:`flowlearn.io.load_saved_model`). Its ``serving_default`` (= ``predict``) signature takes
        the receiver tensors by name and returns the predictions (a single Tensor as ``output``).

        Parameters
        ----------
        export_dir_base : str or path
        serving_input_receiver_fn : callable
            Returns a :class:`flowlearn.io.ServingInputReceiver`, e.g. from
            ``fl.io.build_raw_serving_input_receiver_fn({"x": ("float32", (4,))})``.
        as_text, debug_outputs : see :func:`flowlearn.io.export_saved_model`.

        Returns
        -------
        str or None
            The new export's folder. Under ``RunConfig(train_distribute=...)`` only the chief (rank 0)
            exports; the other ranks write nothing and return None, so that a script run on every rank
            exports once.
        """
        if not _is_chief(self):
            return None
        return _export_saved_model(self, export_dir_base, serving_input_receiver_fn=serving_input_receiver_fn,
                                   as_text=as_text, debug_outputs=debug_outputs)

    def _saved_model_signatures(self, serving_input_receiver_fn=None):
        if not callable(serving_input_receiver_fn):
            raise TypeError(
                "Estimator.export_saved_model: expected `serving_input_receiver_fn` to be a callable returning a "
                "ServingInputReceiver (see fl.io.build_raw_serving_input_receiver_fn); got "
                f"{serving_input_receiver_fn!r}."
            )
        receiver = serving_input_receiver_fn()
        self._prepare((getattr(receiver, "features", None), None), ModeKeys.PREDICT)

        def predictions(features):
            return self._call_model_fn(features, None, ModeKeys.PREDICT).predictions

        return receiver_signatures(receiver, predictions)

    def _inference_graph(self, features):
        """The PREDICT-mode model_fn traced on two rows of ``features``: the picture in TensorBoard's Graphs tab."""
        keyed = isinstance(features, dict)
        names = list(features) if keyed else ["features"]
        examples = [numpy.asarray(features[name])[:2] for name in names] if keyed else [numpy.asarray(features)[:2]]

        def predictions(*arrays):
            given = dict(zip(names, arrays)) if keyed else arrays[0]
            out = self._call_model_fn(given, None, ModeKeys.PREDICT).predictions
            return {str(key): value for key, value in out.items()} if isinstance(out, dict) else {"output": out}

        with no_grad(), training_mode(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trace warnings concern replay, not the picture
            return trace(predictions, *examples, input_names=names)

    # -- variables --------------------------------------------------------------------------------
    def latest_checkpoint(self):
        """The path of model_dir's latest checkpoint, or None."""
        # Reading and parsing the index costs about as much as a one-row prediction: the answer is
        # remembered while the index file is unchanged (same inode, size and modification time; it is
        # replaced by a rename on every save, so another process's save changes the inode).
        try:
            info = os.stat(os.path.join(self._model_dir, _checkpoint_module().INDEX_NAME))
        except OSError:
            return _checkpoint_module().latest_checkpoint(self._model_dir)
        key = (info.st_ino, info.st_size, info.st_mtime_ns)
        cached_key, path = self._index_cache
        if key != cached_key or path is None or not os.path.exists(path):
            path = _checkpoint_module().latest_checkpoint(self._model_dir)
            self._index_cache = (key, path)
        return path

    def _checkpoint_arrays(self):
        latest = self.latest_checkpoint()
        if latest is None:
            raise ValueError(f"Estimator: model_dir {self._model_dir!r} holds no checkpoint yet; train first.")
        return _checkpoint_module().load_checkpoint(latest)[0]

    def get_variable_names(self):
        """The names of the variables in the latest checkpoint (optimizer slots and global step included)."""
        return sorted(self._checkpoint_arrays())

    def get_variable_value(self, name):
        """The value of variable ``name`` in the latest checkpoint, as a numpy array."""
        arrays = self._checkpoint_arrays()
        if name not in arrays:
            raise ValueError(
                f"Estimator.get_variable_value: no variable named {name!r} in the latest checkpoint; its variables "
                f"are {sorted(arrays)}."
            )
        return arrays[name]


def _load_state(store, arrays, path, strict):
    """Put a checkpoint's arrays into ``store``: its variables in place, its optimizer slots into ``slots``.

    Every variable of the store must be in the checkpoint, with its shape. With ``strict`` (training)
    every entry of the checkpoint must be a variable or a slot of one (``"<variable>/<optimizer>/<slot>"``,
    ``"<optimizer>/iterations"``); evaluation and prediction ignore what their model_fn did not create.
    """
    targets = {w.name: w for w in store.variables}
    slots = {name: array for name, array in arrays.items() if name not in targets and _is_slot_name(name, targets)}
    if strict:
        checked = {name: array for name, array in arrays.items() if name not in slots}
    else:
        checked = {name: array for name, array in arrays.items() if name in targets}
    _checkpoint_module().restore_variables(checked, targets, path)
    store.slots.clear()
    store.slots.update({name: numpy.array(array) for name, array in slots.items()})


def _is_slot_name(name, variables):
    owner, _, rest = name.rpartition("/")
    if rest == "iterations":
        return True
    owner = owner.rpartition("/")[0]  # "<variable>/<optimizer>"
    return owner in variables


def _limited(first, rest, count):
    """``first``, then the batches of ``rest``: ``count`` in all (None: every one). One generator, as it is
    asked for every training step."""
    yield first
    if count is None:
        yield from rest
        return
    if count <= 1:
        return
    for index, batch in enumerate(rest, 2):
        yield batch
        if index >= count:
            return


class _TrainStep:
    """One training step of run_training: the model_fn in TRAIN mode (whose train_op has applied the
    update), the global step advanced; logs the step's loss and global step, as TensorFlow reports them."""

    def __init__(self, estimator):
        self.estimator = estimator
        self.global_step = estimator._global_step_variable()
        self.step = int(self.global_step.item())

    def reset_state(self):
        pass  # the logs are per step, not running means

    def __call__(self, batch):
        features, labels = batch
        estimator = self.estimator
        spec = estimator._call_model_fn(features, labels, ModeKeys.TRAIN)
        value = float(spec.loss.item())
        strategy = current_strategy()
        if strategy is not None:
            value = strategy.global_mean(value)  # the global batch's loss: every rank stops (or not) alike
        if not math.isfinite(value):
            # The update from this loss has been applied already (minimize runs inside model_fn): the
            # in-memory state is lost, the model_dir keeps the last good checkpoint.
            estimator._in_memory = None
            raise NonFiniteLossError(
                f"Estimator.train: the loss became {value} at global step {self.step}; training stopped. The "
                f"model_dir keeps its latest checkpoint ({estimator.latest_checkpoint()}), from before; the next "
                "train, evaluate or predict call starts from it."
            )
        step = int(self.global_step.data)
        if step == self.step:
            # The train_op did not advance the global step (minimize without global_step=): advance it
            # here, so that steps and max_steps still end training.
            step += 1
            self.global_step.assign(numpy.array(step, dtype=self.global_step.dtype))
        self.step = step
        estimator._last_train_op = spec.train_op
        return {"loss": value, "global_step": step}


def _training_callbacks(estimator, start, after_save, example_features):
    config = estimator.config
    callbacks = [_CheckpointSaver(estimator, config.save_checkpoints_steps, config.save_checkpoints_secs, after_save)]
    histogram_steps = config.save_histogram_steps if config.save_summary_steps is not None else None
    if config.save_summary_steps is not None or config.log_step_count_steps is not None:
        # (With summaries and step logging both off it would do nothing, yet be called twice a step.)
        callbacks.append(_StepLogger(estimator, config.save_summary_steps, config.log_step_count_steps, start,
                                     histogram_steps, example_features))
    return callbacks


class _CheckpointSaver(Callback):
    """Saves a checkpoint every ``steps`` global steps or ``secs`` seconds, and when training ends."""

    chief_only = True  # writes files or prints: rank 0 only under a data-parallel strategy

    def __init__(self, estimator, steps, secs, after_save=None):
        super().__init__()
        self.estimator = estimator
        self.after_save = after_save
        self.every_steps = steps
        self.every_secs = secs
        self.last_step = None
        self.last_time = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        step = logs["global_step"]
        due = (self.every_steps is not None and step % self.every_steps == 0) or (
            self.every_secs is not None and time.monotonic() - self.last_time >= self.every_secs)
        if due:
            self._save(step)

    def _save(self, step):
        if step != self.last_step:
            path = self.estimator._save(step)
            self.last_step = step
            self.last_time = time.monotonic()
            if self.after_save is not None:
                self.after_save(path, step)

    def on_train_end(self, logs=None):
        self._save(self.estimator._global_step())


class _StepLogger(Callback):
    """Loss, learning rate, global steps/second (and weight histograms) to TensorBoard (model_dir) and to logging.

    The first time it opens the event file, it also writes the model's inference graph (the PREDICT-mode model_fn
    traced on the first batch's features), as tf.estimator did; a model_fn that cannot be traced gets a warning.
    """

    chief_only = True  # writes files or prints: rank 0 only under a data-parallel strategy

    def __init__(self, estimator, summary_steps, log_steps, start, histogram_steps=None, example_features=None):
        super().__init__()
        self.estimator = estimator
        self.example_features = example_features
        self.summary_steps = summary_steps
        self.histogram_steps = histogram_steps
        self.log_steps = log_steps
        self.writer = None
        self.mark = (start, time.monotonic())
        self.log_mark = self.mark

    def _open(self):
        if self.writer is None:  # opened when first needed: a short run imports no writer
            self.writer = _summary_writer(self.estimator.model_dir)
            if self.writer is None:
                self.summary_steps = self.histogram_steps = None
            elif not self.estimator._graph_written and self.example_features is not None:
                self._write_graph()
        return self.writer is not None

    def _write_graph(self):
        self.estimator._graph_written = True
        try:
            graph = self.estimator._inference_graph(self.example_features)
        except Exception as error:  # noqa: BLE001 - a picture must not stop training
            warnings.warn(f"Estimator: the model_fn could not be traced in PREDICT mode, so TensorBoard gets no "
                          f"graph ({type(error).__name__}: {error}).", RuntimeWarning, stacklevel=2)
            return
        self.writer.add_graph(graph)

    def on_train_batch_end(self, batch, logs=None):
        step = logs["global_step"]
        if self.histogram_steps is not None and step % self.histogram_steps == 0 and self._open():
            for variable in self.estimator._store.trainable_variables:
                values = backend.to_numpy(variable.data)
                if numpy.isfinite(values).all():  # a diverging run still gets its scalars; TensorBoard refuses inf
                    self.writer.add_histogram(variable.name, values, step)
        if self.summary_steps is not None and step % self.summary_steps == 0:
            if not self._open():
                return
            now = time.monotonic()
            rate = (step - self.mark[0]) / max(now - self.mark[1], 1e-9)
            self.mark = (step, now)
            self.writer.add_scalar("loss", logs["loss"], step)
            self.writer.add_scalar("global_step/sec", rate, step)
            optimizer = getattr(self.estimator._last_train_op, "optimizer", None)
            if optimizer is not None and hasattr(optimizer, "current_learning_rate"):
                self.writer.add_scalar("learning_rate", optimizer.current_learning_rate, step)
        if self.log_steps is not None and step % self.log_steps == 0 and logger.isEnabledFor(logging.INFO):
            now = time.monotonic()
            rate = (step - self.log_mark[0]) / max(now - self.log_mark[1], 1e-9)
            self.log_mark = (step, now)
            logger.info("loss = %.6g, step = %d (%.3g global steps/sec)", logs["loss"], step, rate)

    def _close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_train_end(self, logs=None):
        self._close()

    def _on_abort(self):
        self._close()


_warned_no_tensorboard = set()


def _summary_writer(logdir):
    """E's SummaryWriter for ``logdir``, or None (logged once) when the tensorboard extra is missing."""
    try:
        from ..io.tensorboard import SummaryWriter

        return SummaryWriter(logdir)
    except ImportError as error:
        if logdir not in _warned_no_tensorboard:
            _warned_no_tensorboard.add(logdir)
            logger.info("Estimator: no TensorBoard summaries for %s (%s)", logdir, error)
        return None


def _is_chief(estimator):
    """Whether this process writes model_dir's files: always, unless a data-parallel strategy says another rank."""
    strategy = estimator.config.train_distribute
    return strategy is None or strategy.is_chief


def _write_eval_summaries(estimator, results, name):
    if estimator.config.save_summary_steps is None:  # summaries turned off: none for evaluations either
        return
    if not _is_chief(estimator):  # every rank evaluates the whole input; one writes what it found
        return
    logdir = os.path.join(estimator.model_dir, "eval" if name is None else f"eval_{name}")
    writer = _summary_writer(logdir)
    if writer is None:
        return
    try:
        step = results["global_step"]
        for key, value in results.items():
            if key != "global_step":
                writer.add_scalar(key, value, step)
    finally:
        writer.close()


class _StreamedMetrics:
    """The eval_metric_ops of every batch streamed into one metric per key over the whole evaluation."""

    def __init__(self):
        self.metrics = {}

    def update(self, ops):
        from .. import metrics as metrics_module

        for key, op in ops.items():
            op = metrics_module.as_metric_op(op, key)
            metric = self.metrics.get(key)
            if metric is None:
                metric = self.metrics[key] = op.create_state()
            op.update(metric)

    def results(self):
        return {key: float(metric.result()) for key, metric in self.metrics.items()}
