"""Reverse-mode differentiation: one iterative walk over the recorded nodes.

No recursion anywhere, so a chain of 10,000 ops back-propagates as easily as a chain of ten.
Gradients are summed out of place (``a + b``): a backward may hand the same array to two inputs,
so no gradient array is ever modified after it is produced.

What a leaf's ``.grad`` receives is an array the leaf owns: a writable array that is not a view and
not the very array another leaf or the caller holds (copied only when it might be one of those,
so the usual fresh GEMM or sum result is kept as it is). Optimizers, clipping and users may then
write into ``.grad`` freely.

Before a node's backward runs, the versions of the inputs it saved are compared with those seen by
the forward (see :class:`~flowlearn.core.primitive.Node`): an in-place write in between (an
optimizer step, ``Tensor.assign``) would otherwise give a silently wrong gradient.
"""
from . import backend


def _topological_order(root):
    """Tensors that carry a node, each after every tensor it was computed from."""
    order = []
    visited = set()
    stack = [(root, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        node = tensor._node
        if node.inputs is None:
            raise RuntimeError(
                "Trying to back-propagate through a graph a second time: its saved arrays were freed by the "
                "first backward. Pass retain_graph=True to the first backward() if you need to do this."
            )
        for parent in node.inputs:
            if parent._node is not None and id(parent) not in visited:
                stack.append((parent, False))
    return order


def _check_grad(node, index, parent, grad):
    data = parent.data
    if grad.shape != data.shape or grad.dtype != data.dtype:
        raise RuntimeError(
            f"{node.primitive.name}.backward returned a gradient for input {index} of shape {grad.shape} and "
            f"dtype {grad.dtype}; expected shape {data.shape} and dtype {data.dtype}."
        )


def _modified_error(node):
    for index, (parent, version) in enumerate(zip(node.inputs, node.versions)):
        if parent._counter[0] != version:
            # A computed tensor is never written itself (assign refuses): the write went to what it views.
            view = "" if parent._node is None else " (a view of the tensor that was written)"
            return RuntimeError(
                "One of the variables needed for gradient computation has been modified by an inplace "
                f"operation: {parent._describe()}{view}, input {index} of {node.primitive.name!r}, is at "
                f"version {parent._counter[0]}; expected version {version}, its version when the forward ran. "
                "Call backward() before the update (optimizer.step, assign, set_weights), or run the forward "
                "again after it."
            )


def _owned(array, handed):
    """``array``, or a copy when it may be read-only, a view of another array, or held elsewhere."""
    key = id(array)
    if array.base is not None or key in handed or not getattr(array.flags, "writeable", True):
        array = array.copy()
        key = id(array)
    handed[key] = array
    return array


def backward(root, grad=None, retain_graph=False):
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires grad."""
    if not root.requires_grad:
        raise RuntimeError(
            "backward() called on a tensor that does not require grad: no input of the computation had "
            "requires_grad=True, or it was computed under no_grad()."
        )
    xp = backend.array_module(root.data)
    if grad is None:
        if root.data.size != 1:
            raise ValueError(
                f"backward() without a gradient needs a single-element output; got shape {root.shape}. "
                "Pass grad= with the output's shape."
            )
        grad = xp.ones_like(root.data)
        # Arrays given to leaves so far, by id (kept alive here so that no id is reused meanwhile).
        handed = {}
    else:
        grad = xp.asarray(getattr(grad, "data", grad), dtype=root.dtype)
        if grad.shape != root.shape:
            raise ValueError(f"backward(): expected grad of shape {root.shape}, got {grad.shape}.")
        handed = {id(grad): grad}  # the caller's array: a leaf gets a copy of it
    if root._node is None:
        root._accumulate(_owned(grad, handed))
        return
    order = _topological_order(root)
    # Every version first: a stale graph raises before any leaf's .grad changes or any node is freed.
    for tensor in order:
        node = tensor._node
        versions = node.versions
        if versions is not None:
            for parent, version in zip(node.inputs, versions):
                if parent._counter[0] != version:
                    raise _modified_error(node)
    pending = {id(root): grad}
    for tensor in reversed(order):
        out_grad = pending.pop(id(tensor), None)
        node = tensor._node
        if out_grad is not None:
            if backend._cupy is not None:  # a graph may cross devices through to_device
                xp = backend.array_module(out_grad)
            in_grads = node.primitive.backward(xp, out_grad, node.saved, node.needs, **node.attrs)
            for index, (parent, need, in_grad) in enumerate(zip(node.inputs, node.needs, in_grads)):
                if not need or in_grad is None:
                    continue
                _check_grad(node, index, parent, in_grad)
                if parent._node is None:
                    # A second arrival is added out of place: the sum is fresh, no copy needed.
                    parent._accumulate(in_grad if parent.grad is not None else _owned(in_grad, handed))
                else:
                    key = id(parent)
                    previous = pending.get(key)
                    pending[key] = in_grad if previous is None else previous + in_grad
        if not retain_graph:
            node.release()
