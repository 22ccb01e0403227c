"""``train_and_evaluate``: train an Estimator, evaluating each new checkpoint and exporting the model, as
``tf.estimator.train_and_evaluate`` runs on one machine.

Evaluation follows checkpoints: after each checkpoint that training saves, the evaluation input is run
if ``throttle_secs`` have passed since the last evaluation (and ``start_delay_secs`` since training
began); the final checkpoint is always evaluated. After every evaluation each of the EvalSpec's
exporters is asked to export (see :class:`Exporter`).
"""
import numbers
import os
import time

from ..layers.callbacks import Callback

__all__ = ["TrainSpec", "EvalSpec", "Exporter", "train_and_evaluate"]


def _check_input_fn(owner, input_fn):
    if not callable(input_fn):
        raise TypeError(f"{owner}: expected `input_fn` to be callable; got {type(input_fn).__name__}.")
    return input_fn


def _check_count(owner, name, value, minimum, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < minimum or int(value) != value:
        raise ValueError(
            f"{owner}: expected `{name}` to be an integer >= {minimum}{' or None' if allow_none else ''}; "
            f"got {name}={value!r}."
        )
    return int(value)


class TrainSpec:
    """What ``train_and_evaluate`` trains on.

    Parameters
    ----------
    input_fn : callable
        The training input (see ``Estimator.train``).
    max_steps : int, optional
        Train until the global step reaches this; None trains until ``input_fn``'s batches run out.
    hooks : list of Callback, optional
        Passed to ``Estimator.train``.
    """

    def __init__(self, input_fn, max_steps=None, hooks=None):
        self.input_fn = _check_input_fn("TrainSpec", input_fn)
        self.max_steps = _check_count("TrainSpec", "max_steps", max_steps, 1)
        self.hooks = list(hooks or [])
        for hook in self.hooks:
            if not isinstance(hook, Callback):
                raise TypeError(f"TrainSpec: expected `hooks` to be Callback objects; got {type(hook).__name__}.")


class Exporter:
    """Exports the model after an evaluation of ``train_and_evaluate``: subclass and define :meth:`export`.

    The exporters that write a servable model (the latest, or the best by an eval metric) are built on
    this interface.

    Parameters
    ----------
    name : str
        Names the exporter's folder: ``<model_dir>/export/<name>``.
    """

    def __init__(self, name):
        if not isinstance(name, str) or not name or os.sep in name or "/" in name:
            raise ValueError(f"Exporter: expected `name` to be a non-empty folder name; got name={name!r}.")
        self._name = name

    @property
    def name(self):
        return self._name

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        """Export the model of ``checkpoint_path`` (just evaluated: ``eval_result``) under ``export_path``.

        Parameters
        ----------
        estimator : Estimator
            Holds the weights of ``checkpoint_path`` in memory.
        export_path : str
            ``<model_dir>/export/<name>``, the folder this exporter owns (not created for it).
        checkpoint_path : str
        eval_result : dict
            What ``Estimator.evaluate`` returned for this checkpoint.
        is_the_final_export : bool
            True after the evaluation of the checkpoint that ends training.

        Returns
        -------
        object
            What was exported (a path, or None when nothing was), collected by ``train_and_evaluate``.
        """
        raise NotImplementedError(f"{type(self).__name__} must define export().")


class EvalSpec:
    """What ``train_and_evaluate`` evaluates on, how often, and who exports.

    Parameters
    ----------
    input_fn : callable
        The evaluation input (see ``Estimator.evaluate``).
    steps : int, optional
        Batches per evaluation (default 100); None evaluates until ``input_fn``'s batches run out.
    name : str, optional
        Evaluations are written under ``model_dir/eval_<name>`` instead of ``model_dir/eval``.
    exporters : Exporter or list of Exporter
    start_delay_secs : int
        No evaluation before training has run this long, except the final one (default 120).
    throttle_secs : int
        No evaluation sooner than this after the previous one, except the final one (default 600).
    """

    def __init__(self, input_fn, steps=100, name=None, exporters=None, start_delay_secs=120, throttle_secs=600):
        self.input_fn = _check_input_fn("EvalSpec", input_fn)
        self.steps = _check_count("EvalSpec", "steps", steps, 1)
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"EvalSpec: expected `name` to be a non-empty string or None; got name={name!r}.")
        self.name = name
        if exporters is None:
            exporters = ()
        elif isinstance(exporters, Exporter):
            exporters = (exporters,)
        exporters = tuple(exporters)
        for exporter in exporters:
            if not isinstance(exporter, Exporter):
                raise TypeError(
                    f"EvalSpec: expected `exporters` to be Exporter objects; got {type(exporter).__name__}."
                )
        names = [exporter.name for exporter in exporters]
        if len(set(names)) != len(names):
            raise ValueError(f"EvalSpec: exporter names must be unique (they name folders); got {names}.")
        self.exporters = exporters
        self.start_delay_secs = _check_count("EvalSpec", "start_delay_secs", start_delay_secs, 0, allow_none=False)
        self.throttle_secs = _check_count("EvalSpec", "throttle_secs", throttle_secs, 0, allow_none=False)


class _Evaluator:
    """Evaluates checkpoints as training saves them (throttled), then runs the exporters."""

    def __init__(self, estimator, eval_spec, max_steps):
        self.estimator = estimator
        self.max_steps = max_steps
        self.spec = eval_spec
        self.started = time.monotonic()
        self.last_time = None
        self.last_path = None
        self.result = None
        self.exports = []

    def after_save(self, path, step):
        if self.max_steps is not None and step >= self.max_steps:
            return  # the final checkpoint: evaluated and exported as the final one after training
        now = time.monotonic()
        if now - self.started < self.spec.start_delay_secs:
            return
        if self.last_time is not None and now - self.last_time < self.spec.throttle_secs:
            return
        self.evaluate(path, final=False)

    def evaluate(self, path, final):
        spec, estimator = self.spec, self.estimator
        self.result = estimator.evaluate(spec.input_fn, steps=spec.steps, name=spec.name)
        self.last_time = time.monotonic()
        self.last_path = path
        for exporter in spec.exporters:
            export_path = os.path.join(estimator.model_dir, "export", exporter.name)
            self.exports.append(exporter.export(estimator, export_path, path, self.result, final))
        return self.result


def train_and_evaluate(estimator, train_spec, eval_spec):
    """Train ``estimator`` per ``train_spec``, evaluating and exporting per ``eval_spec``.

    Returns
    -------
    tuple
        ``(eval_result, export_results)``: the last evaluation's dict and every exporter's return values,
        in order (as TensorFlow 2 returns them).
    """
    from .estimator import Estimator

    if not isinstance(estimator, Estimator):
        raise TypeError(f"train_and_evaluate: expected `estimator` to be an Estimator; got {type(estimator).__name__}.")
    if not isinstance(train_spec, TrainSpec):
        raise TypeError(
            f"train_and_evaluate: expected `train_spec` to be a TrainSpec; got {type(train_spec).__name__}."
        )
    if not isinstance(eval_spec, EvalSpec):
        raise TypeError(f"train_and_evaluate: expected `eval_spec` to be an EvalSpec; got {type(eval_spec).__name__}.")
    evaluator = _Evaluator(estimator, eval_spec, train_spec.max_steps)
    estimator._train(train_spec.input_fn, max_steps=train_spec.max_steps, hooks=train_spec.hooks,
                     after_save=evaluator.after_save)
    latest = estimator.latest_checkpoint()
    if latest is not None and latest != evaluator.last_path:
        evaluator.evaluate(latest, final=True)
    elif evaluator.last_path is not None and eval_spec.exporters:
        # The final checkpoint was evaluated during training, but not exported as the final one.
        for exporter in eval_spec.exporters:
            export_path = os.path.join(estimator.model_dir, "export", exporter.name)
            evaluator.exports.append(exporter.export(estimator, export_path, latest, evaluator.result, True))
    return evaluator.result, evaluator.exports
