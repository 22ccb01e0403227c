"""Reverse-mode differentiation: one iterative walk over the recorded nodes.

No recursion anywhere, so a chain of 10,000 ops back-propagates as easily as a chain of ten.
Gradients are summed out of place (``a + b``): a backward may hand the same array to two inputs,
so no gradient array is ever modified after it is produced.
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
    else:
        grad = xp.asarray(getattr(grad, "data", grad), dtype=root.dtype)
        if grad.shape != root.shape:
            raise ValueError(f"backward(): expected grad of shape {root.shape}, got {grad.shape}.")
    if root._node is None:
        root._accumulate(grad)
        return
    pending = {id(root): grad}
    for tensor in reversed(_topological_order(root)):
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
                    parent._accumulate(in_grad)
                else:
                    key = id(parent)
                    previous = pending.get(key)
                    pending[key] = in_grad if previous is None else previous + in_grad
        if not retain_graph:
            node.release()
