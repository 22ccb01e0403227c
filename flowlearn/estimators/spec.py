"""What a model_fn returns: :class:`EstimatorSpec`, and the three modes it is called in (:class:`ModeKeys`)."""
import collections.abc

from ..core.tensor import Tensor

__all__ = ["ModeKeys", "EstimatorSpec"]


class ModeKeys:
    """The modes a model_fn is called in, with TensorFlow's values."""

    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "infer"

    ALL = (TRAIN, EVAL, PREDICT)


def check_mode(owner, mode):
    """``mode`` if it is one of :class:`ModeKeys`, else a ValueError naming ``owner``."""
    if not isinstance(mode, str) or mode not in ModeKeys.ALL:
        raise ValueError(
            f"{owner}: expected `mode` to be one of ModeKeys.TRAIN ('train'), ModeKeys.EVAL ('eval') or "
            f"ModeKeys.PREDICT ('infer'); got mode={mode!r}."
        )
    return mode


class SpecError(ValueError):
    """An EstimatorSpec lacks what its mode needs (the Estimator adds the model_fn's name)."""


class EstimatorSpec(collections.namedtuple(
        "EstimatorSpec", "mode predictions loss train_op eval_metric_ops export_outputs")):
    """The ops a model_fn defines for one mode, as ``tf.estimator.EstimatorSpec``.

    Parameters
    ----------
    mode : str
        One of :class:`ModeKeys`.
    predictions : Tensor, array or dict of them
        Required in PREDICT mode; what ``Estimator.predict`` yields.
    loss : Tensor
        A scalar; required in TRAIN and EVAL mode.
    train_op : object
        What ``optimizer.minimize(loss, global_step=...)`` returned; required in TRAIN mode. The
        update has already been applied when the model_fn returns (the model_fn runs eagerly).
    eval_metric_ops : dict, optional
        ``{name: metric op}`` (``fl.metrics.accuracy(labels, predictions)``, ...), streamed over every
        batch of ``Estimator.evaluate``.
    export_outputs : dict, optional
        Kept for the exporters.

    >>> import flowlearn as fl
    >>> spec = EstimatorSpec(ModeKeys.PREDICT, predictions={"y": fl.tensor([1.0])})
    >>> spec.mode
    'infer'
    """

    __slots__ = ()

    def __new__(cls, mode, predictions=None, loss=None, train_op=None, eval_metric_ops=None, export_outputs=None):
        check_mode("EstimatorSpec", mode)
        if mode in (ModeKeys.TRAIN, ModeKeys.EVAL):
            if loss is None:
                raise SpecError(f"EstimatorSpec: mode={mode!r} needs a `loss` (a scalar Tensor); got loss=None.")
            if not isinstance(loss, Tensor) or loss.size != 1:
                shape = getattr(loss, "shape", None)
                raise SpecError(
                    f"EstimatorSpec: expected `loss` to be a scalar Tensor; got {type(loss).__name__}"
                    f"{'' if shape is None else f' of shape {tuple(shape)}'}."
                )
        if mode == ModeKeys.TRAIN and train_op is None:
            raise SpecError(
                "EstimatorSpec: mode='train' needs a `train_op` (what optimizer.minimize(loss, "
                "global_step=fl.train.get_global_step()) returns); got train_op=None."
            )
        if mode == ModeKeys.PREDICT and predictions is None:
            raise SpecError("EstimatorSpec: mode='infer' (PREDICT) needs `predictions`; got predictions=None.")
        if eval_metric_ops is not None and not isinstance(eval_metric_ops, collections.abc.Mapping):
            raise SpecError(
                f"EstimatorSpec: expected `eval_metric_ops` to be a dict {{name: metric op}}; got "
                f"{type(eval_metric_ops).__name__}."
            )
        if export_outputs is not None and not isinstance(export_outputs, collections.abc.Mapping):
            raise SpecError(
                f"EstimatorSpec: expected `export_outputs` to be a dict; got {type(export_outputs).__name__}."
            )
        return super().__new__(cls, mode, predictions, loss, train_op, dict(eval_metric_ops or {}), export_outputs)
