"""Sequential: a stack of layers trained with compile / fit / evaluate / predict, as in Keras.

Training runs through the shared loop of :mod:`flowlearn.layers.training`; saving and loading are
in :mod:`flowlearn.layers.saving`.
"""
import numbers

import numpy

from ..core import backend, no_grad, training_mode
from ..core import losses as losses_module
from ..core import metrics as metrics_module
from ..core import optimizers as optimizers_module
from ..core.distribution import check_strategy
from ..core.ops import mean as _mean
from ..core.ops.activation import get_activation
from ..core.parallel import hands_blas_back
from ..core.tensor import Tensor, tensor
from . import _args, seeding
from .base import InputSpec, Layer, _shape_repr
from .data_adapter import (
    ArrayAdapter, BatchSourceAdapter, check_finite, describe, first_steps, host_array, is_batch_source,
)
from .inference import replay_forward
from .input_layer import InputLayer
from .serialization import deserialize, serialize
from .training import (
    GradientStep, NonFiniteLossError, array_batches, evaluate_batches, forward_state, make_metric, run_training,
)

# Probability-input cross-entropies, and the last-layer activation whose logits they can take instead.
_FUSABLE = {
    losses_module.SparseCategoricalCrossentropy: "softmax",
    losses_module.CategoricalCrossentropy: "softmax",
    losses_module.BinaryCrossentropy: "sigmoid",
}


# Why each argument that arrays take cannot come with a batch source (an input_fn, a generator).
_NOT_WITH_A_SOURCE = {
    "y": "its batches carry the labels",
    "batch_size": "its batches come already made",
    "sample_weight": "a batch carries its weights as a third item, (features, labels, sample_weight)",
    "validation_split": "no held-out part can be cut from a stream; pass validation_data",
}


# Writers of exported formats by name, filled by the modules that implement them (flowlearn.io registers
# "saved_model" when it is imported, which `import flowlearn` does): layers never import io.
EXPORTERS = {}


def _refuse_with_source(what, **given):
    for name, value in given.items():
        if value is not None and not (name == "validation_split" and not value):
            raise ValueError(
                f"{what}: `{name}` cannot be given when `x` is an input_fn, a generator or an iterable of batches: "
                f"{_NOT_WITH_A_SOURCE[name]}. Received: "
                + (f"{name}={value!r}" if isinstance(value, (numbers.Number, str)) else f"{name} as {describe(value)}")
            )


class Sequential(Layer):
    """A linear stack of layers, with Keras's training API.

    Parameters
    ----------
    layers : list of Layer, optional
        Added in order with :meth:`add`. A first :class:`InputLayer` (``fl.layers.Input(shape)``) or a
        first layer given ``input_shape=`` builds the model at once; otherwise it is built from the
        first data it sees (or an explicit :meth:`build`).
    name : str, optional

    Examples
    --------
    >>> import numpy as np, flowlearn as fl
    >>> model = fl.Sequential([fl.layers.Input((4,)), fl.layers.Dense(8, activation="relu"),
    ...                        fl.layers.Dense(3, activation="softmax")])
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> x, y = np.random.rand(64, 4), np.random.randint(0, 3, 64)
    >>> history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    >>> model.predict(x[:5]).shape
    (5, 3)
    """

    def __init__(self, layers=None, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self._layers = []
        self._output_shapes = []
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._loss_fn = None
        self._metric_ids = []
        for layer in layers or []:
            self.add(layer)

    # -- structure ------------------------------------------------------------------------------
    @property
    def layers(self):
        """The layers, without the InputLayer (as Keras lists them)."""
        return [layer for layer in self._layers if not isinstance(layer, InputLayer)]

    def add(self, layer):
        """Append ``layer``; a built model builds it at once from the current output shape."""
        if not isinstance(layer, Layer):
            raise TypeError(f'Sequential "{self.name}": add() expected a Layer instance; got {type(layer).__name__}.')
        if isinstance(layer, InputLayer) and self._layers:
            raise ValueError(f'Sequential "{self.name}": an InputLayer can only be the first layer.')
        if any(layer is existing for existing in self._layers):
            raise ValueError(f'Sequential "{self.name}": layer "{layer.name}" is already in the model.')
        self._layers.append(layer)
        first = self._layers[0]
        # Integer inputs (for an Embedding, or an integer InputLayer) must reach the first layer uncast.
        self._autocast = first._autocast and not (isinstance(first, InputLayer) and first.dtype.kind != "f")
        if self.built:
            self._propagate(self.build_input_shape)
        elif len(self._layers) == 1 and first.input_shape is not None:
            self.build((None,) + tuple(first.input_shape))

    def build(self, input_shape):
        """Build every layer for inputs of ``input_shape`` (batch dimension first, may be None)."""
        if not self._layers:
            raise ValueError(f'Sequential "{self.name}": cannot build a model with no layers; add layers first.')
        shape = (None,) + tuple(input_shape[1:])
        self._propagate(shape)
        self.input_spec = InputSpec(shape=shape)

    def _propagate(self, shape):
        shapes = []
        for layer in self._layers:
            if not layer.built and not layer._weights:
                layer._device = self._device
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
            shapes.append(shape)
        self._output_shapes = shapes

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    @property
    def output_shape(self):
        self._require_built("output_shape")
        return self._output_shapes[-1]

    def _require_built(self, what):
        if not self.built:
            raise ValueError(
                f'Sequential "{self.name}": {what} needs the model built. Build it with build(input_shape), give '
                "it an Input layer first, or call it (or fit) on data."
            )

    # -- computation ----------------------------------------------------------------------------
    def call(self, inputs, training=None):
        return self._forward(inputs, logits=False, training=training)

    def _forward(self, inputs, logits, training=None):
        """The stack's output, or with ``logits`` the last layer's pre-activation output.

        ``training=None`` lets each layer read the mode set by ``fl.training_mode`` (as fit and
        evaluate set it).
        """
        layers = self._layers
        for layer in layers[:-1]:
            inputs = layer(inputs, training=training)
        last = layers[-1]
        return last.call_logits(inputs, training=training) if logits else last(inputs, training=training)

    # -- compile --------------------------------------------------------------------------------
    def compile(self, optimizer="adam", loss=None, metrics=None):
        """Choose the optimizer, the loss and the metrics that ``fit`` and ``evaluate`` use.

        Parameters
        ----------
        optimizer : str or Optimizer
            A name ("adam", "sgd", "rmsprop", "adagrad", "adamw") with default settings, or an instance.
        loss : str, Loss or callable
            Keras names ("mse", "mae", "huber", "binary_crossentropy", "categorical_crossentropy",
            "sparse_categorical_crossentropy"), a Loss object, or ``f(y_true, y_pred) -> Tensor``
            (per-sample values are weighted by sample weights and averaged; a scalar is used as is).
            String cross-entropies take probabilities, as in Keras. When the last layer's activation is
            softmax (categorical losses) or sigmoid (binary), the loss is computed from that layer's
            pre-activation output with the fused from-logits loss: same value, stabler and faster.
        metrics : list, optional
            Names ("accuracy", "mae", "rmse", "auc", "precision", "recall"), Metric objects, or
            ``f(y_true, y_pred) -> number`` functions (averaged over batches).
        """
        self.optimizer = optimizers_module.get(optimizer)
        self._loss_fn = losses_module.get(loss)
        self.loss = loss
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, dict)) or not isinstance(metrics, (list, tuple)):
            raise TypeError(f"compile: expected `metrics` to be a list; got {metrics!r}.")
        for metric in metrics:
            make_metric(metric)  # fail now, not in the middle of fit
        self._metric_ids = list(metrics)
        self.compiled = True

    @property
    def metrics_names(self):
        """``["loss", <metric names>]``: the order of ``evaluate``'s list result."""
        return ["loss"] + [make_metric(metric).name for metric in self._metric_ids]

    def _require_compiled(self, what):
        if not self.compiled or self._loss_fn is None:
            raise ValueError(
                f'Sequential "{self.name}": {what} needs a loss; call compile(optimizer=..., loss=...) first.'
            )

    def _loss_plan(self):
        """(loss function, compute from logits, activation of the last layer)."""
        loss = self._loss_fn
        last = self._layers[-1]
        activation = getattr(last, "activation", None)
        wanted = _FUSABLE.get(type(loss))
        if wanted is not None and activation == wanted and not loss.from_logits and hasattr(last, "call_logits"):
            fused = type(loss).from_config({**loss.get_config(), "from_logits": True})
            return fused, True, get_activation(activation)
        return loss, False, None

    def _make_forward(self):
        """``forward(batch) -> (loss, y_true, y_pred)`` for the current loss plan: the one function that
        training steps, validation and evaluate run."""
        loss_fn, from_logits, activation = self._loss_plan()
        plain = not isinstance(loss_fn, losses_module.Loss)
        want_predictions = bool(self._metric_ids)
        device = self._device

        def forward(batch):
            x, y, sample_weight = batch
            inputs = tensor(x, device=device)
            outputs = self._forward(inputs, logits=from_logits)
            if plain:
                loss = self._call_plain_loss(loss_fn, y, outputs, sample_weight)
            else:
                loss = loss_fn(y, outputs, sample_weight=sample_weight)
            penalties = self.regularization_losses()
            for penalty in penalties:
                loss = loss + penalty
            predictions = None
            if want_predictions:
                predictions = outputs
                if from_logits:
                    with no_grad():
                        predictions = activation(outputs)
            return loss, y, predictions

        return forward

    @staticmethod
    def _call_plain_loss(function, y, outputs, sample_weight):
        """A user loss ``f(y_true, y_pred)``: per-sample values are weighted and averaged, as in Keras."""
        value = function(tensor(y, device=outputs.device), outputs)
        if not isinstance(value, Tensor):
            raise TypeError(f"The loss function {function!r} must return a Tensor; got {type(value).__name__}.")
        if value.ndim == 0:
            return value
        if sample_weight is not None:
            weights = tensor(sample_weight.reshape((-1,) + (1,) * (value.ndim - 1)), dtype=value.dtype,
                             device=value.device)
            value = value * weights
        return _mean(value)

    # -- data checks ----------------------------------------------------------------------------
    def _prepare_x(self, what, x, allow_nan=False):
        """``x`` as one numpy array of the model's input dtype (converted once), checked against the model."""
        x = host_array(what, "x", x)
        if self._autocast and x.dtype != self.dtype:
            x = x.astype(self.dtype)
        if not allow_nan:
            check_finite(what, "x", x)
        if not self._layers:
            raise ValueError(f'Sequential "{self.name}": {what} needs layers; add some first.')
        try:
            if not self.built:
                self.build((None,) + x.shape[1:])
            else:
                self.input_spec.check(self.name, x.shape)
        except ValueError as error:
            raise ValueError(f"{what}: {error}") from None
        return x

    def _target_kind(self):
        loss = self._loss_fn
        for kind, cls in (("sparse", losses_module.SparseCategoricalCrossentropy),
                          ("categorical", losses_module.CategoricalCrossentropy),
                          ("binary", losses_module.BinaryCrossentropy)):
            if isinstance(loss, cls):
                return kind
        return "other"

    def _prepare_y(self, what, y, n, allow_nan=False):
        y = host_array(what, "y", y)
        if len(y) != n:
            raise ValueError(f"{what}: x and y must hold the same number of samples; got {n} and {len(y)}.")
        output = self._output_shapes[-1]
        kind = self._target_kind()
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{what}: expected numeric targets `y`; got dtype {y.dtype}.")
        if y.dtype.kind == "f" and not allow_nan:
            check_finite(what, "y", y)
        if kind == "sparse":
            classes = output[-1]
            if y.shape[1:] not in (tuple(output[1:-1]), tuple(output[1:-1]) + (1,)):
                raise ValueError(
                    f"{what}: sparse_categorical_crossentropy expects integer class labels of shape "
                    f"{_shape_repr((n,) + tuple(output[1:-1]))} for a model output of shape {_shape_repr(output)}; "
                    f"got y of shape {y.shape}."
                )
            if y.dtype.kind == "f" and not numpy.array_equal(y, numpy.floor(y)):
                raise ValueError(f"{what}: sparse_categorical_crossentropy expects integer class labels; got fractions.")
            bad = (y < 0) | (y >= classes)
            if bad.any():
                raise ValueError(
                    f"{what}: labels must be class indices in [0, {classes}) for a model with {classes} outputs; got "
                    f"out-of-range values {numpy.unique(y[bad])[:10].tolist()}."
                )
            return y.astype(numpy.int64, copy=False)
        if kind == "categorical" and y.shape[1:] != tuple(output[1:]):
            hint = " For integer class labels use loss='sparse_categorical_crossentropy'." if y.ndim == 1 else ""
            raise ValueError(
                f"{what}: categorical_crossentropy expects one-hot targets of shape "
                f"{_shape_repr((n,) + tuple(output[1:]))}; got y of shape {y.shape}.{hint}"
            )
        if kind == "binary" and ((y < 0) | (y > 1)).any():
            raise ValueError(f"{what}: binary_crossentropy expects targets in [0, 1]; got values from {y.min()} to {y.max()}.")
        return y.astype(self.dtype, copy=False) if y.dtype.kind == "f" or kind != "other" else y

    def _class_labels(self, y):
        """Class index per sample, for class_weight."""
        if self._target_kind() == "categorical" or (y.ndim > 1 and y.shape[-1] > 1):
            return y.reshape(len(y), -1, y.shape[-1]).argmax(axis=-1)[:, 0]
        return numpy.rint(y.reshape(len(y), -1)[:, 0]).astype(numpy.int64)

    def _prepare_weights(self, what, y, sample_weight, class_weight):
        weights = None
        if sample_weight is not None:
            weights = numpy.asarray(sample_weight.numpy() if isinstance(sample_weight, Tensor) else sample_weight)
            if weights.shape not in ((len(y),), (len(y), 1)):
                raise ValueError(f"{what}: expected `sample_weight` of shape ({len(y)},); got {weights.shape}.")
            weights = weights.reshape(-1).astype(self.dtype)
            check_finite(what, "sample_weight", weights)
        if class_weight is not None:
            if not isinstance(class_weight, dict) or not all(
                    isinstance(c, numbers.Integral) and not isinstance(c, bool) and c >= 0 for c in class_weight):
                raise TypeError(
                    f"{what}: expected `class_weight` to be a dict {{class index >= 0: weight}}; got {class_weight!r}."
                )
            labels = self._class_labels(y)
            per_class = numpy.ones(max(int(labels.max()) + 1, max(class_weight, default=0) + 1), dtype=self.dtype)
            for label, weight in class_weight.items():
                per_class[int(label)] = weight
            from_classes = per_class[labels]
            weights = from_classes if weights is None else weights * from_classes
        return weights

    def _prepare(self, what, x, y, sample_weight=None, class_weight=None, allow_nan=False):
        x = self._prepare_x(what, x, allow_nan)
        y = self._prepare_y(what, y, len(x), allow_nan)
        return x, y, self._prepare_weights(what, y, sample_weight, class_weight)

    # -- training and inference -----------------------------------------------------------------
    def _prepared_batches(self, what, batches, class_weight=None, allow_nan=False):
        """Each ``(features, labels, sample_weight)`` batch of a batch source, checked as ``_prepare`` checks
        arrays (converted to the model's dtype, targets checked against the loss)."""
        for index, (x, y, weights) in enumerate(batches):
            where = f"{what} (batch {index + 1})"
            if y is None:
                raise ValueError(
                    f"{where}: the batch has no labels (labels=None); training and evaluation need (features, "
                    "labels) batches. An input_fn made for prediction (e.g. numpy_input_fn(x) without y) only "
                    "suits predict."
                )
            yield self._prepare(where, x, y, weights, class_weight, allow_nan)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            terminate_on_nan=True, allow_nan=False, steps_per_epoch=None, validation_steps=None, strategy=None):
        """Train for ``epochs`` epochs over ``x`` and ``y``; returns the :class:`~flowlearn.callbacks.History`.

        Parameters
        ----------
        x, y : array-like, or a batch source and None
            Inputs (float64 or integer data are converted once to the model's float32) and targets:
            class indices for sparse cross-entropy, one-hot rows for categorical, 0/1 for binary. Arrays,
            Tensors, DataFrames and Series, or a dict holding one array.
            Or ``x`` is a batch source and ``y`` is None: an input_fn (a function returning an iterable of
            ``(features, labels)`` batches, e.g. ``flowlearn.io.numpy_input_fn(...)``), a Python
            generator, or another iterable of batches; a batch may carry sample weights as a third item.
            See "Feeding data" in docs/layers.md for how epochs go through a source.
        batch_size : int, optional
            Samples per batch for arrays (default 32); not for a batch source, whose batches come made.
        epochs, initial_epoch : int
            As in Keras: the epochs run are ``range(initial_epoch, epochs)``.
        verbose : {0, 1, 2}
            0 silent, 1 a progress bar per epoch, 2 one line per epoch.
        callbacks : list of Callback, optional
        validation_split : float
            The fraction of the data, taken from the end before shuffling, held out for validation
            (arrays only).
        validation_data : tuple or batch source, optional
            ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight_val)``, or a batch source gone through
            at the end of every epoch; wins over ``validation_split``.
        shuffle : bool
            Visit the training samples in a new random order each epoch (drawn from the generator that
            :func:`flowlearn.layers.set_random_seed` seeds). Arrays only: a batch source is taken in the
            order it yields (``numpy_input_fn(..., shuffle=True)`` shuffles itself).
        class_weight : dict, optional
            ``{class index: weight}`` multiplying the loss of each sample of that class (unlisted: 1).
        sample_weight : array-like, optional
            One weight per sample (arrays only).
        terminate_on_nan : bool
            True (default): if a batch's loss is NaN or infinite, stop with
            :class:`~flowlearn.layers.training.NonFiniteLossError` and keep the weights and optimizer
            state from before that batch. False: keep training whatever the loss (Keras's behaviour).
        allow_nan : bool
            False (default): NaN or infinite values in ``x`` or ``y`` raise ValueError before training
            (before each batch, for a batch source).
        steps_per_epoch : int, optional
            Batches per epoch. Without it an epoch is one pass over the data; a source that repeats
            forever (``numpy_input_fn(..., num_epochs=None)``) needs it. With it each epoch takes the next
            ``steps_per_epoch`` batches, going on where the previous epoch stopped: arrays and input_fns
            start a new pass whenever one ends, and a generator that runs out ends training with a warning.
        validation_steps : int, optional
            At most this many batches of ``validation_data`` per validation; a restartable source (an
            input_fn, arrays) starts from its beginning at each validation, so every epoch sees the same
            batches.
        strategy : flowlearn.distributed.MPIStrategy, optional
            Data-parallel training over MPI ranks (run the script under ``mpirun``): every rank passes the
            same data and ``batch_size`` is the global batch, of which each rank trains on its slice; the
            ranks start from rank 0's weights and shuffling, average their gradients before every update
            and log the global loss and metrics; only rank 0 shows progress and runs file-writing
            callbacks. See docs/scale-out.md.

        Returns
        -------
        History
            ``history.history`` maps "loss", the metric names and their "val_" forms to per-epoch lists.
        """
        self._require_compiled("fit")
        if verbose not in (0, 1, 2):
            raise ValueError(f"Received an invalid value for `verbose`: expected 0, 1 or 2; got {verbose!r}.")
        if strategy is not None:
            check_strategy("fit", strategy)
            strategy.broadcast_generators([seeding.shuffle_rng()])  # every rank cuts the same global batches
        if not isinstance(validation_split, numbers.Real) or not 0.0 <= validation_split < 1.0:
            raise ValueError(
                f"Received an invalid value for `validation_split`: expected a number in [0, 1); got {validation_split!r}."
            )
        if is_batch_source(x):
            _refuse_with_source("fit", y=y, batch_size=batch_size, sample_weight=sample_weight,
                                validation_split=validation_split)
            source = BatchSourceAdapter(x, what="fit", name="x", steps=steps_per_epoch, steps_name="steps_per_epoch",
                                        training=True)
            # Checked before the first batch is drawn: a refusal must not cost a one-shot generator a batch.
            validation = self._validation_batches(validation_data, validation_steps, 32, allow_nan,
                                                  int(epochs) - int(initial_epoch))
            # The first batch builds the model, so the gradient step below sees its weights.
            next(self._prepared_batches("fit", [source.peek()], class_weight, allow_nan))

            def batches(epoch):
                return self._prepared_batches("fit", source.epoch(epoch), class_weight, allow_nan)

            n_batches = source.num_batches
        else:
            batch_size = _args.positive_int("fit", "batch_size", 32 if batch_size is None else batch_size)
            self._require_targets("fit", x, y)
            x, y, weights = self._prepare("fit", x, y, sample_weight, class_weight, allow_nan)
            held_out = None
            if validation_data is None and validation_split:
                split = int(len(x) * (1.0 - validation_split))
                if split == 0 or split == len(x):
                    raise ValueError(
                        f"fit: validation_split={validation_split} of {len(x)} samples leaves "
                        f"{split} for training and {len(x) - split} for validation; both need at least one."
                    )
                held_out = (x[split:], y[split:], None if weights is None else weights[split:])
                x, y, weights = x[:split], y[:split], None if weights is None else weights[:split]
            adapter = ArrayAdapter((x, y, weights), batch_size, shuffle=bool(shuffle), rng=seeding.shuffle_rng(),
                                   steps=steps_per_epoch)
            batches, n_batches = adapter.epoch, adapter.num_batches
            if held_out is not None:
                validation = self._validation_batches(held_out, validation_steps, batch_size, prepared=True)
            else:
                validation = self._validation_batches(validation_data, validation_steps, batch_size, allow_nan,
                                                      int(epochs) - int(initial_epoch))
        forward = self._make_forward()
        step = self._gradient_step(forward, terminate_on_nan)
        validate = None
        if validation is not None:
            epoch_count = iter(range(int(initial_epoch), 2 ** 62))

            def validate():
                return evaluate_batches(forward, validation(next(epoch_count)), self._metric_ids)

        return run_training(
            step, batches, epochs=epochs, initial_epoch=initial_epoch, steps=n_batches, callbacks=callbacks,
            validate=validate, model=self, verbose=verbose, terminate_on_nan=terminate_on_nan,
            strategy=strategy, variables=self.weights,
        )

    def _require_targets(self, what, x, y):
        if x is None or y is None:
            missing = "`x` and `y`" if x is None and y is None else "`x`" if x is None else "targets `y`"
            raise ValueError(
                f"{what}: expected {missing}; got None. Pass arrays x and y, or as x an input_fn or a generator "
                "of (features, labels) batches (then without y)."
            )

    def _validation_batches(self, validation_data, steps, batch_size, allow_nan=False, epochs=1, prepared=False):
        """``epoch -> batches`` of the validation data (prepared, unless ``prepared`` says it is: a held-out
        part of checked arrays), or None without validation data."""
        what = "fit (validation_data)"
        if validation_data is None:
            return None
        if is_batch_source(validation_data):
            source = BatchSourceAdapter(validation_data, what="fit", name="validation_data", steps=steps,
                                        steps_name="validation_steps")
            if source.one_shot and steps is None and epochs > 1:
                raise ValueError(
                    "fit: `validation_data` is a generator, which can be gone through only once, and validation "
                    f"runs after each of the {epochs} epochs. Pass an input_fn (a function returning the batches), "
                    "or a generator that repeats together with `validation_steps`."
                )
            return lambda epoch: self._prepared_batches(what, source.epoch(epoch), allow_nan=allow_nan)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError(
                "fit: expected `validation_data` as (x_val, y_val) or (x_val, y_val, sample_weight_val), or an "
                f"input_fn or a generator of batches; got {type(validation_data).__name__} {str(validation_data)[:60]}."
            )
        arrays = validation_data if prepared else self._prepare(
            what, *validation_data[:2], sample_weight=validation_data[2] if len(validation_data) == 3 else None,
            allow_nan=allow_nan)
        steps = _args.positive_int("fit", "validation_steps", steps) if steps is not None else None
        return lambda epoch: first_steps(array_batches(arrays, batch_size), steps)

    def _gradient_step(self, forward, skip_nonfinite):
        parameters = self.trainable_weights
        state = forward_state(self)  # restored if a batch's loss is not finite
        return GradientStep(forward, self.optimizer, lambda: parameters, metrics=self._metric_ids,
                            skip_nonfinite=skip_nonfinite, state=lambda: state)

    def _results(self, logs, return_dict):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def evaluate(self, x=None, y=None, batch_size=None, verbose=0, sample_weight=None, return_dict=False,
                 allow_nan=False, steps=None):
        """The loss (regularization included) and metrics over ``x``, ``y``, computed in batches.

        ``x`` and ``y`` are arrays (``batch_size`` samples at a time, default 32), or ``x`` is an input_fn,
        a generator or an iterable of ``(features, labels)`` batches (one pass over it) and ``y`` is
        None. ``steps`` stops after that many batches.

        Returns the loss as a float when there are no metrics, else ``[loss, *metrics]`` in the order
        of :attr:`metrics_names` (a dict with ``return_dict=True``), as Keras does. ``verbose`` is
        accepted for Keras compatibility; evaluation prints nothing.
        """
        self._require_compiled("evaluate")
        if is_batch_source(x):
            _refuse_with_source("evaluate", y=y, batch_size=batch_size, sample_weight=sample_weight)
            source = BatchSourceAdapter(x, what="evaluate", name="x", steps=steps)
            batches = self._prepared_batches("evaluate", source.epoch(0), allow_nan=allow_nan)
        else:
            batch_size = _args.positive_int("evaluate", "batch_size", 32 if batch_size is None else batch_size)
            steps = _args.positive_int("evaluate", "steps", steps) if steps is not None else None
            self._require_targets("evaluate", x, y)
            data = self._prepare("evaluate", x, y, sample_weight, allow_nan=allow_nan)
            batches = first_steps(array_batches(data, batch_size), steps)
        logs = evaluate_batches(self._make_forward(), batches, self._metric_ids)
        return self._results(logs, return_dict)

    @hands_blas_back
    def predict(self, x, batch_size=None, verbose=0, steps=None):
        """The model's outputs for ``x`` as a numpy array, computed ``batch_size`` samples at a time (default
        32) in inference mode with no graph recorded (only the result is allocated whole). A model of
        flowlearn's own layers runs through a replay of its forward traced on the first call
        (:mod:`flowlearn.layers.inference`): the layers' numbers bit for bit, without their per-call Python work.

        ``x`` may also be an input_fn, a generator or an iterable of batches: each batch is ``features``,
        ``(features,)`` or ``(features, labels)`` (labels ignored) and the outputs of all batches are
        joined. ``steps`` stops after that many batches (for arrays: ``steps * batch_size`` samples).
        ``verbose`` is accepted for Keras compatibility.
        """
        if is_batch_source(x):
            _refuse_with_source("predict", batch_size=batch_size)
            source = BatchSourceAdapter(x, what="predict", name="x", steps=steps, sample_weight=False,
                                        bare_features=True)
            outputs = []
            for index, (features, _) in enumerate(source.epoch(0)):
                features = self._prepare_x(f"predict (batch {index + 1})", features, allow_nan=True)
                outputs.append(self._predict_array(features, len(features)))
            return numpy.concatenate(outputs)
        batch_size = _args.positive_int("predict", "batch_size", 32 if batch_size is None else batch_size)
        if x is None:
            self._require_targets("predict", x, True)
        x = self._prepare_x("predict", x, allow_nan=True)
        if steps is not None:
            x = x[:_args.positive_int("predict", "steps", steps) * batch_size]
        return self._predict_array(x, batch_size)

    def _predict_array(self, x, batch_size):
        result = None
        with no_grad(), training_mode(False):
            for start in range(0, len(x), batch_size):
                output = None
                if self._autocast and isinstance(x, numpy.ndarray):
                    output = replay_forward(self, x[start:start + batch_size].astype(self.dtype, copy=False))
                if output is None:
                    output = backend.to_numpy(self._forward(tensor(x[start:start + batch_size],
                                                                   device=self._device), logits=False).data)
                if result is None:
                    result = numpy.empty((len(x),) + output.shape[1:], dtype=output.dtype)
                result[start:start + len(output)] = output
        return result

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One gradient step on one batch; returns its loss (and metrics) as ``evaluate`` does.

        A NaN or infinite loss raises NonFiniteLossError without changing the weights.
        """
        self._require_compiled("train_on_batch")
        batch = self._prepare("train_on_batch", x, y, sample_weight, class_weight)
        logs = self._gradient_step(self._make_forward(), True)(batch)
        if not numpy.isfinite(logs["loss"]):
            raise NonFiniteLossError(
                f"train_on_batch: the loss is {logs['loss']}; the update was not applied and the weights are unchanged."
            )
        return self._results(logs, return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """The loss (and metrics) on one batch, in inference mode."""
        self._require_compiled("test_on_batch")
        batch = self._prepare("test_on_batch", x, y, sample_weight)
        return self._results(evaluate_batches(self._make_forward(), [batch], self._metric_ids), return_dict)

    def predict_on_batch(self, x):
        """The outputs for one batch as a numpy array (inference mode, no graph)."""
        return self.predict(x, batch_size=max(len(x), 1))

    # -- summary, config, saving ----------------------------------------------------------------
    def summary(self, print_fn=print):
        """The Keras table of layers, output shapes and parameter counts.

        Printed with ``print_fn`` (default ``print``); with ``print_fn=None`` the text is returned
        instead.
        """
        self._require_built("summary()")
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer, shape in zip(self._layers, self._output_shapes):
            if not isinstance(layer, InputLayer):
                rows.append((f"{layer.name} ({type(layer).__name__})", _shape_repr(shape), str(layer.count_params())))
        widths = [max(len(row[i]) for row in rows) + 3 for i in range(3)]
        widths = [max(widths[0], 29), max(widths[1], 26), max(widths[2], 10)]
        line = sum(widths)

        def format_row(row):
            return "".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()

        trainable = sum(int(numpy.prod(w.shape)) for w in self.trainable_weights)
        total = self.count_params()
        lines = [f'Model: "{self.name}"', "_" * line, format_row(rows[0]), "=" * line]
        for index, row in enumerate(rows[1:]):
            if index:
                lines.append("")
            lines.append(format_row(row))
        lines += [
            "=" * line,
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            "_" * line,
        ]
        text = "\n".join(lines)
        if print_fn is None:
            return text
        print_fn(text)
        return None

    def get_config(self):
        """The layers' configs and the input shape the model was built with (plain JSON)."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype.name,
            "layers": [serialize(layer) for layer in self._layers],
            "build_input_shape": None if not self.built else list(self.build_input_shape),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A new model from :meth:`get_config` output, built (with fresh weights) if it was built.

        Layer classes are looked up by name among flowlearn's registered layers (and
        ``custom_objects``); nothing named in the config is imported or run.
        """
        config = dict(config)
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for entry in config.get("layers", []):
            model.add(deserialize(entry, custom_objects))
        shape = config.get("build_input_shape")
        if shape is not None and not model.built:
            model.build(tuple(shape))
        return model

    def get_compile_config(self):
        """The compile arguments as plain JSON, or None when they cannot be (a loss or metric function)."""
        if not self.compiled:
            return None
        loss = self.loss
        if isinstance(loss, losses_module.Loss):
            loss = {"class_name": type(loss).__name__, "config": loss.get_config()}
        elif loss is not None and not isinstance(loss, str):
            return None
        metrics = []
        for metric in self._metric_ids:
            if isinstance(metric, metrics_module.Metric):
                metrics.append({"class_name": type(metric).__name__, "config": metric.get_config()})
            elif isinstance(metric, (str, dict)):
                metrics.append(metric)
            else:
                return None
        return {"optimizer": optimizers_module.serialize(self.optimizer), "loss": loss, "metrics": metrics}

    def save(self, path):
        """Save architecture, weights, compile settings and optimizer state to one file (see
        :func:`flowlearn.layers.saving.save_model`); ``flowlearn.load_model(path)`` restores it."""
        from .saving import save_model

        save_model(self, path)

    def export(self, path, format="saved_model", **options):
        """Export the model for serving into the folder ``path`` (new or empty) and return its path.

        ``format="saved_model"`` writes a SavedModel (``flowlearn.io.load_saved_model`` reads it; a server
        takes ``models/NAME/<version>``, so export to e.g. ``"models/mnist/1"``). ``options`` go to the
        format's writer (``as_text``, ``debug_outputs``). See docs/export-and-serving.md.

        >>> model.export("models/mnist/1")  # doctest: +SKIP
        """
        writer = EXPORTERS.get(format)
        if writer is None:
            raise ValueError(f'Sequential "{self.name}": export() expected `format` in {sorted(EXPORTERS)}; '
                             f"received format={format!r}.")
        return writer(self, path, **options)
