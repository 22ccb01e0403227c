"""Prediction through a traced replay of a Sequential's inference forward.

Calling a layer costs Python work besides its arithmetic: the input becomes a Tensor, its shape is
checked, the op wrapper checks its arguments again and the autodiff bookkeeping runs up to where
``no_grad`` stops it. For a batch of images that is noise; for one 28x28 image through the default
``CNNClassifier`` network it was ~100-180 us of ~650-900 (a sixth). A :class:`flowlearn.core.trace.Graph`
replays the same primitives' forward functions straight on arrays, so the replay computes the same
numbers (the same functions on the same arrays, bit for bit; checked when the plan is made) for less.

The plan is traced on the first prediction and kept on the model. It holds the model's weight arrays
themselves, not copies: training updates them in place, so the plan stays valid through ``fit``; a
weight array replaced (``set_weights``, a move to another device, a new layer) is noticed on the next
call, which traces again. Like Keras' compiled predict function, it follows the weights, not later edits
of a layer's attributes.

Only models made of flowlearn's own layers on the CPU use a plan: their forward is ops all the way down,
which a trace records exactly. A layer of the user's own may compute with arrays outside the ops (which
a trace would freeze into a constant), so such models, models on a GPU, and any trace that warns or does
not reproduce the eager output run layer by layer as before.
"""
import warnings

import numpy

from ..core import no_grad, training_mode
from ..core.tensor import tensor
from ..core.trace import TraceWarning, trace

_OWN_LAYERS = "flowlearn.layers."


class _Plan:
    """A traced graph (or None: this model runs layer by layer), what it was traced from, and the shape of one
    input row it replays."""

    __slots__ = ("graph", "layers", "arrays", "row_shape")

    def __init__(self, graph, layers, arrays, row_shape):
        self.graph, self.layers, self.arrays, self.row_shape = graph, layers, arrays, row_shape

    def matches(self, layers, arrays):
        return (len(layers) == len(self.layers) and len(arrays) == len(self.arrays)
                and all(a is b for a, b in zip(layers, self.layers))
                and all(a is b for a, b in zip(arrays, self.arrays)))


def _traceable(model):
    """The model is on the CPU and made of flowlearn's own layers, none holding others (whose weights the
    plan's check of the weight arrays would not see)."""
    return model._device == "cpu" and all(
        type(layer).__module__.startswith(_OWN_LAYERS) and sum(1 for _ in layer._walk()) == 1
        for layer in model._layers)


def _trace(model, example):
    """The graph of ``model``'s inference forward, or None when replaying it could differ from eager."""
    # Two rows, so the trace can tell the batch dimension from a size-1 one.
    rows = numpy.concatenate([example[:1], example[:1]]) if len(example) < 2 else example[:2]
    with warnings.catch_warnings():
        # A frozen value or a fixed batch size: the replay would not generalise.
        warnings.simplefilter("error", TraceWarning)
        try:
            with no_grad(), training_mode(False):
                graph = trace(lambda inputs: model(inputs), tensor(rows, device="cpu"))
                eager = model(tensor(rows, device="cpu")).data
        except (TraceWarning, ValueError, TypeError, NotImplementedError):
            return None  # the eager forward runs instead, and raises there if the model itself is broken
    if graph.fixed_batch is not None:
        return None
    with no_grad():
        replayed = graph.run(rows)
    return graph if replayed.dtype == eager.dtype and numpy.array_equal(replayed, eager) else None


def replay_forward(model, x):
    """``model``'s inference output for the numpy array ``x`` through its traced plan, or None when the
    model has no plan (then the caller runs its layers).

    ``x`` must already be in the model's dtype and of its input shape; the caller runs the call under
    ``no_grad`` or not, as it likes (the replay records nothing).
    """
    layers = model._layers
    # The layers' own weights: for a model the plan replays (no layer holds others) this is model.weights, at
    # a fiftieth of the cost, which matters at one image per call.
    arrays = [weight.data for layer in layers for weight, _ in layer._weights]
    plan = getattr(model, "_inference_plan", None)
    if plan is None or not plan.matches(layers, arrays):
        plan = _Plan(_trace(model, x) if _traceable(model) else None, list(layers), arrays, x.shape[1:])
        model._inference_plan = plan
    if plan.graph is None or x.shape[1:] != plan.row_shape:
        return None  # rows of another shape (a model built for any image size): layer by layer
    with no_grad():
        return plan.graph.run(x)
