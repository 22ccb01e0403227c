"""TensorBoard event files: :class:`SummaryWriter`, and the :class:`TensorBoard` callback for ``fit``.

The files are written by tensorboardX (the ``tensorboard`` extra: ``pip install 'flowlearn[tensorboard]'``),
which frames records and computes their checksums as TensorBoard expects, with no TensorFlow. It is
imported when a writer is created, so ``import flowlearn.io`` works without it.

Layout, as Keras and tf.estimator write it (``tensorboard --logdir <dir>`` shows each folder as a run):

* ``fit(callbacks=[TensorBoard(log_dir)])``: ``log_dir/train`` and ``log_dir/validation``, with the
  tags ``epoch_loss``, ``epoch_<metric>``, ``epoch_learning_rate`` and ``epoch_steps_per_second``
  (step = epoch), ``batch_<name>`` (step = batch count) and one histogram per weight.
* an Estimator: ``model_dir`` for training and ``model_dir/eval`` (or ``eval_<name>``) for evaluation, with
  the tags ``loss``, ``learning_rate``, ``global_step/sec`` and the eval metric names (step = global step).
"""
import functools
import itertools
import json
import numbers
import os
import time
import warnings
import weakref

import numpy

from ..core import backend
from ..core.tensor import Tensor
from ..layers.callbacks.base import Callback, get_learning_rate

INSTALL_HINT = "pip install 'flowlearn[tensorboard]'"


def _tensorboardx():
    """The tensorboardX module, or ImportError saying which extra brings it."""
    try:
        import tensorboardX
    except ImportError as error:
        raise ImportError(
            f"flowlearn's TensorBoard writer needs the tensorboardX package, which is not installed: {INSTALL_HINT} "
            f"(or pip install tensorboardX). ({error})"
        ) from error
    return tensorboardX


def _host(values):
    """``values`` (a Tensor, numpy or cupy array, or Python numbers) as a numpy array."""
    if isinstance(values, Tensor):
        values = values.data
    if type(values).__module__.startswith("cupy"):
        values = backend.to_numpy(values)
    return numpy.asarray(values)


def _check_tag(tag):
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"Received an invalid value for `tag`: expected a non-empty string; got {tag!r}.")


def _check_step(step):
    if isinstance(step, (Tensor, numpy.ndarray)) or type(step).__module__.startswith("cupy"):
        # A global-step variable (an int64 scalar Tensor) is accepted as it is.
        array = _host(step)
        if array.size == 1 and array.dtype.kind in "iu":
            step = array.reshape(()).item()
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"Received an invalid value for `step`: expected an integer >= 0; got {step!r}.")
    return int(step)


class SummaryWriter:
    """Write scalars, histograms, text and graphs to a TensorBoard event file in ``logdir``.

    Events are written as they are added (tensorboardX's record writer, no background thread or
    queue) into a buffered file that goes to disk on :meth:`flush`, on :meth:`close`, when an event
    is added ``flush_secs`` or more after the last flush, and when the writer is garbage-collected or
    the interpreter exits: no event is lost on a normal exit.

    Parameters
    ----------
    logdir : str or os.PathLike
        The run's folder (created if missing). Each writer starts its own
        ``events.out.tfevents.<time>.<host>.<pid>.<n>`` file, so writers on one folder (a second
        ``fit`` or ``train``) never overwrite each other; TensorBoard reads them all.
    flush_secs : float
        The longest time an added event waits in the buffer, counted at the next add.
    filename_suffix : str
        Appended to the event file's name.

    Raises
    ------
    ImportError
        When tensorboardX is missing, naming ``pip install 'flowlearn[tensorboard]'``.

    Examples
    --------
    >>> from flowlearn.io.tensorboard import SummaryWriter
    >>> with SummaryWriter("runs/exp1") as writer:  # doctest: +SKIP
    ...     for step in range(100):
    ...         writer.add_scalar("loss", 1.0 / (step + 1), step)
    ...     writer.add_histogram("dense/kernel", model.weights[0], step)
    """

    def __init__(self, logdir, flush_secs=120, filename_suffix=""):
        _tensorboardx()
        from tensorboardX.event_file_writer import EventsWriter

        if not isinstance(flush_secs, numbers.Real) or isinstance(flush_secs, bool) or not flush_secs >= 0:
            raise ValueError(
                f"Received an invalid value for `flush_secs`: expected a number >= 0; got {flush_secs!r}."
            )
        self.logdir = os.fspath(logdir)
        self.flush_secs = float(flush_secs)
        os.makedirs(self.logdir, exist_ok=True)
        # The file name carries seconds only: two writers started in one second would share it (and the
        # second truncate the first) without the process id and a per-process count, as TensorFlow adds.
        # The count is zero-padded: TensorBoard reads a folder's files in name order, and writer 10 must not
        # sort before writer 9 (events read out of step order look like a restart and get purged).
        unique = f".{os.getpid()}.{next(_WRITER_IDS):06d}{filename_suffix}"
        self._events = EventsWriter(os.path.join(self.logdir, "events"), unique)
        self._last_flush = time.monotonic()
        self._finalizer = weakref.finalize(self, _close_events, self._events)

    @property
    def path(self):
        """The event file this writer writes."""
        return self._events._file_name

    def _write(self, what, step, summary=None, **fields):
        if not self._finalizer.alive:
            raise ValueError(f"SummaryWriter({self.logdir!r}).{what}: the writer is closed; create a new one.")
        from tensorboardX.proto import event_pb2

        event = event_pb2.Event(wall_time=time.time(), step=step, **fields)
        if summary is not None:
            event.summary.CopyFrom(summary)
        self._events.write_event(event)
        if time.monotonic() - self._last_flush >= self.flush_secs:
            self.flush()

    def add_scalar(self, tag, value, step):
        """Log one number (a Python or numpy number, or a one-element array or Tensor) at ``step``."""
        _check_tag(tag)
        step = _check_step(step)
        array = _host(value)
        if array.size != 1 or array.dtype.kind not in "biuf":
            raise ValueError(
                f"add_scalar({tag!r}): expected `value` to be one real number; got "
                f"{type(value).__name__} of shape {array.shape} and dtype {array.dtype}."
            )
        from tensorboardX.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(array.reshape(())))])
        self._write("add_scalar", step, summary)

    def add_histogram(self, tag, values, step, bins="tensorflow"):
        """Log the distribution of ``values`` (any shape; flattened) at ``step``.

        ``bins`` is tensorboardX's: ``"tensorflow"`` (TensorFlow's exponential buckets) or a
        :func:`numpy.histogram` rule such as ``"auto"``. Empty or non-finite values raise ValueError,
        as TensorFlow's histogram summary did.
        """
        _check_tag(tag)
        step = _check_step(step)
        array = _host(values)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"add_histogram({tag!r}): expected real numbers in `values`; got dtype {array.dtype}.")
        if array.size == 0:
            raise ValueError(f"add_histogram({tag!r}): `values` is empty; a histogram needs at least one value.")
        array = array.astype(numpy.float64, copy=False).ravel()
        bad = int(array.size - numpy.count_nonzero(numpy.isfinite(array)))
        if bad:
            raise ValueError(
                f"add_histogram({tag!r}): `values` holds {bad} NaN or infinite value(s) of {array.size}; a "
                "histogram needs finite values."
            )
        from tensorboardX.summary import histogram

        summary = histogram(tag, array, _tensorflow_buckets() if bins == "tensorflow" else bins)
        summary.value[0].tag = tag  # tensorboardX may rewrite characters it dislikes; keep the caller's tag
        self._write("add_histogram", step, summary)

    def add_text(self, tag, text, step):
        """Log a string (shown as Markdown in TensorBoard's Text tab) at ``step``."""
        _check_tag(tag)
        step = _check_step(step)
        if not isinstance(text, str):
            raise ValueError(f"add_text({tag!r}): expected `text` to be a str; got {type(text).__name__}.")
        from tensorboardX.summary import text as text_summary

        summary = text_summary(tag, text)
        # tensorboardX files text under "<tag>/text_summary"; keep the tag as given, as tf.summary.text does.
        summary.value[0].tag = tag
        self._write("add_text", step, summary)

    def add_graph(self, graph):
        """Write a traced :class:`flowlearn.Graph` for TensorBoard's Graphs tab.

        Each input becomes a ``Placeholder``, each parameter a ``VariableV2`` (constants ``Const``),
        each node an op named after its output with its primitive as the op type and its attrs as
        JSON strings, and each output an ``Identity`` named after it. Shapes show with ``-1`` for the
        batch dimension. Array values are not written.

        >>> graph = fl.trace(lambda x: model(x, training=False), x[:2], input_names=["x"])  # doctest: +SKIP
        >>> writer.add_graph(graph)  # doctest: +SKIP
        """
        if not all(hasattr(graph, name) for name in ("nodes", "inputs", "arrays", "outputs", "output_refs")):
            raise ValueError(f"add_graph: expected a flowlearn.Graph (from fl.trace); got {type(graph).__name__}.")
        self._write("add_graph", 0, graph_def=_graph_def(graph).SerializeToString())

    def flush(self):
        """Write every added event to disk now."""
        if self._finalizer.alive:
            self._events.flush()
            self._last_flush = time.monotonic()

    def close(self):
        """Flush and close the event file; further ``add_*`` calls raise. Closing twice is harmless."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    def __repr__(self):
        return f"<SummaryWriter logdir={self.logdir!r}{'' if self._finalizer.alive else ' closed'}>"


_WRITER_IDS = itertools.count()


@functools.lru_cache(maxsize=None)
def _tensorflow_buckets():
    """TensorFlow's default histogram bucket edges: 0 and +-1e-12 * 1.1**k up to 1e20 (as tensorboardX's
    SummaryWriter builds them), so histograms of any scale keep their shape."""
    positive = 1e-12 * 1.1 ** numpy.arange(int(numpy.ceil(numpy.log(1e32) / numpy.log(1.1))))
    positive = positive[positive < 1e20]
    return numpy.concatenate([-positive[::-1], [0.0], positive])


def _close_events(events):
    # Also run by weakref.finalize at garbage collection and at interpreter exit: nothing stays buffered.
    events.close()  # flushes first


def _graph_def(graph):
    """A TensorBoard GraphDef proto for a flowlearn Graph (structure only: no array values)."""
    from tensorboardX.proto import attr_value_pb2, graph_pb2, node_def_pb2, tensor_shape_pb2

    def shape_attr(shape):
        dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=-1 if size is None else int(size)) for size in shape]
        proto = tensor_shape_pb2.TensorShapeProto(dim=dims)
        return attr_value_pb2.AttrValue(list=attr_value_pb2.AttrValue.ListValue(shape=[proto]))

    def text_attr(value):
        return attr_value_pb2.AttrValue(s=str(value).encode("utf-8"))

    nodes = []
    for spec in graph.inputs:
        nodes.append(node_def_pb2.NodeDef(
            name=spec["name"], op="Placeholder",
            attr={"dtype": text_attr(spec["dtype"]), "_output_shapes": shape_attr(spec["shape"])},
        ))
    parameters = set(graph.parameters)
    for name, array in graph.arrays.items():
        nodes.append(node_def_pb2.NodeDef(
            name=name, op="VariableV2" if name in parameters else "Const",
            attr={"dtype": text_attr(array.dtype), "_output_shapes": shape_attr(array.shape)},
        ))
    shapes = {}
    for node in graph.nodes:
        attr = {key: text_attr(json.dumps(value, default=str)) for key, value in (node.get("attrs") or {}).items()}
        if node.get("shape") is not None:
            attr["_output_shapes"] = shape_attr(node["shape"])
            shapes[node["output"]] = node["shape"]
        nodes.append(node_def_pb2.NodeDef(name=node["output"], op=node["op"], input=list(node["inputs"]), attr=attr))
    for name, ref in zip(graph.outputs, graph.output_refs):
        if name != ref:
            attr = {"_output_shapes": shape_attr(shapes[ref])} if ref in shapes else {}
            nodes.append(node_def_pb2.NodeDef(name=name, op="Identity", input=[ref], attr=attr))
    return graph_pb2.GraphDef(node=nodes)


_UPDATE_FREQS = ("epoch", "batch")


class TensorBoard(Callback):
    """Write ``fit``'s logs to TensorBoard event files, as ``keras.callbacks.TensorBoard``.

    ``log_dir/train`` receives the training values and ``log_dir/validation`` the ``val_`` ones
    (without the prefix, so both runs share a chart): ``epoch_loss``, ``epoch_<metric>``, and in
    ``train`` also ``epoch_learning_rate`` (the optimizer's rate at the epoch's last step) and
    ``epoch_steps_per_second`` (training batches only, validation excluded), each at step = epoch.
    The files are flushed at every epoch end and closed when training ends or fails.

    Parameters
    ----------
    log_dir : str or os.PathLike
    histogram_freq : int
        Every this many epochs (epochs 0, n, 2n, ...), a histogram of every weight of the model, tagged
        with the weight's name (``dense/kernel``); 0 writes none.
    write_graph : bool
        Trace the model at inference (``fl.trace`` on a two-row batch of zeros) after the first batch
        and write its graph; a model that cannot be traced that way gives a warning, not an error.
    update_freq : "epoch", "batch" or int
        ``"batch"`` or n also writes the running epoch values after every (n-th) batch as
        ``batch_loss``, ``batch_<metric>`` in ``train``, at step = batches trained by this callback
        (counted across ``fit`` calls).
    write_steps_per_second : bool
        Write ``epoch_steps_per_second``.
    flush_secs : float
        Passed to :class:`SummaryWriter` (the epoch-end flush makes it matter only for batch values).

    Examples
    --------
    >>> model.fit(x, y, epochs=5, validation_split=0.2,
    ...           callbacks=[fl.callbacks.TensorBoard("logs", histogram_freq=1)])  # doctest: +SKIP

    then ``tensorboard --logdir logs``.
    """

    chief_only = True  # writes files or prints: rank 0 only under a data-parallel strategy

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=False, update_freq="epoch",
                 write_steps_per_second=True, flush_secs=120):
        super().__init__()
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, numbers.Integral) or histogram_freq < 0:
            raise ValueError(
                f"Received an invalid value for `histogram_freq`: expected an integer >= 0; got {histogram_freq!r}."
            )
        if update_freq not in _UPDATE_FREQS and (
            isinstance(update_freq, bool) or not isinstance(update_freq, numbers.Integral) or update_freq < 1
        ):
            raise ValueError(
                f"Received an invalid value for `update_freq`: expected 'epoch', 'batch' or a positive integer; got "
                f"{update_freq!r}."
            )
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = int(histogram_freq)
        self.write_graph = bool(write_graph)
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self.write_steps_per_second = bool(write_steps_per_second)
        self.flush_secs = flush_secs
        self._writers = {}
        self._batches_seen = 0  # the step of batch values; kept across fit calls
        self._graph_written = False

    def _writer(self, run):
        writer = self._writers.get(run)
        if writer is None:
            writer = self._writers[run] = SummaryWriter(os.path.join(self.log_dir, run), flush_secs=self.flush_secs)
        return writer

    def on_train_begin(self, logs=None):
        self._writer("train")  # fails here, before any training, when tensorboardX is missing
        self._graph_written = False

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._epoch_batches = 0
        self._epoch_train_seconds = None
        self._learning_rate = None

    def on_train_batch_end(self, batch, logs=None):
        self._batches_seen += 1
        self._epoch_batches += 1
        # Read at every batch end: the values of the epoch's last batch remain, taken before validation
        # and before other callbacks' on_epoch_end may change the rate.
        self._epoch_train_seconds = time.perf_counter() - self._epoch_start
        self._learning_rate = self._current_learning_rate()
        if self.write_graph and not self._graph_written:
            self._graph_written = True
            started = time.perf_counter()
            self._write_graph()
            self._epoch_start += time.perf_counter() - started  # tracing is not training time
        if self.update_freq != "epoch" and self._batches_seen % self.update_freq == 0:
            writer = self._writer("train")
            for key, value in (logs or {}).items():
                if _is_number(value):
                    writer.add_scalar(f"batch_{key}", value, self._batches_seen)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = {key: value for key, value in logs.items() if not key.startswith("val_")}
        validation = {key[4:]: value for key, value in logs.items() if key.startswith("val_")}
        if "learning_rate" not in train and self._learning_rate is not None:
            train["learning_rate"] = self._learning_rate
        if self.write_steps_per_second and self._epoch_train_seconds:
            train["steps_per_second"] = self._epoch_batches / self._epoch_train_seconds
        for run, values in (("train", train), ("validation", validation)):
            if values:
                writer = self._writer(run)
                for key, value in values.items():
                    if _is_number(value):
                        writer.add_scalar(f"epoch_{key}", value, epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            writer = self._writer("train")
            skipped = []
            for weight in getattr(self.model, "weights", ()):
                try:
                    writer.add_histogram(weight.name, weight, epoch)
                except ValueError:
                    skipped.append(weight.name)  # NaN/inf weights (terminate_on_nan=False): a picture must not stop training
            if skipped:
                warnings.warn(
                    f"TensorBoard: no histogram at epoch {epoch} for {skipped}: they hold NaN or infinite values.",
                    RuntimeWarning, stacklevel=2,
                )
        for writer in self._writers.values():
            writer.flush()

    def _current_learning_rate(self):
        try:
            return get_learning_rate(self.model)
        except (ValueError, TypeError, AttributeError):
            return None  # a model without an optimizer rate: nothing to log

    def _write_graph(self):
        from ..core import no_grad
        from ..core.trace import trace

        model = self.model
        shape = getattr(model, "build_input_shape", None)
        try:
            if shape is None:
                raise ValueError("the model has no build_input_shape")
            # A model whose first layer takes integers (Embedding, an integer Input) is traced on integers.
            dtype = numpy.float32 if getattr(model, "_autocast", True) else numpy.int64
            example = numpy.zeros((2,) + tuple(shape[1:]), dtype=dtype)
            with no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # trace warnings concern replay, not the picture
                graph = trace(lambda x: model(x, training=False), example, input_names=["input"])
        except Exception as error:  # noqa: BLE001 - a picture must not stop training
            warnings.warn(
                f"TensorBoard(write_graph=True): the model could not be traced, so no graph was written ({error}).",
                RuntimeWarning, stacklevel=3,
            )
            return
        self._writer("train").add_graph(graph)

    def _close(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def on_train_end(self, logs=None):
        self._close()

    _on_abort = _close


def _is_number(value):
    # Logs may carry non-numbers (a callback's notes); NaN and inf are numbers and are written as such.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
