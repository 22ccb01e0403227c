"""Op-core benchmark: flowlearn vs PyTorch CPU (and a plain numpy loop) on the same data and threads.

Workloads:
- one training epoch of a 784-256-128-10 ReLU MLP on 8,000 MNIST rows, batch 128, Adam;
- training steps of the CNN conv5x5x32(same)-pool2-conv5x5x64(same)-pool2-dense1024-dropout0.5-dense10,
  batch 100, NHWC 28x28x1.
Each side runs in its own process; medians of several repeats; peak RSS per process.

Run: ``python benchmarks/core_bench.py`` (about two minutes on 2 cores).
"""
import json
import sys
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, main_or_worker, median_time, mnist, report, run_worker  # noqa: E402

THREADS = 2
MLP_EPOCHS = 5
CNN_STEPS = 12
BATCH_MLP = 128
BATCH_CNN = 100


def _glorot(rng, fan_in, fan_out, shape):
    limit = numpy.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(numpy.float32)


def mlp_weights(seed=0):
    rng = numpy.random.default_rng(seed)
    sizes = [784, 256, 128, 10]
    return [(_glorot(rng, a, b, (a, b)), numpy.zeros(b, numpy.float32)) for a, b in zip(sizes, sizes[1:])]


def cnn_weights(seed=0):
    rng = numpy.random.default_rng(seed)
    return [
        (_glorot(rng, 25, 25 * 32, (5, 5, 1, 32)), numpy.zeros(32, numpy.float32)),
        (_glorot(rng, 25 * 32, 25 * 64, (5, 5, 32, 64)), numpy.zeros(64, numpy.float32)),
        (_glorot(rng, 3136, 1024, (3136, 1024)), numpy.zeros(1024, numpy.float32)),
        (_glorot(rng, 1024, 10, (1024, 10)), numpy.zeros(10, numpy.float32)),
    ]


# -- flowlearn ------------------------------------------------------------------------------------
def flowlearn_mlp():
    import flowlearn as fl
    from flowlearn.core import losses, optimizers, ops

    x, y, _, _ = mnist()
    params = [fl.tensor(a, requires_grad=True) for pair in mlp_weights() for a in pair]
    optimizer = optimizers.Adam(learning_rate=1e-3)
    rng = numpy.random.default_rng(0)

    def epoch():
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH_MLP):
            idx = order[start:start + BATCH_MLP]
            h = fl.tensor(x[idx])
            w1, b1, w2, b2, w3, b3 = params
            h = ops.relu(h @ w1 + b1)
            h = ops.relu(h @ w2 + b2)
            loss = losses.sparse_softmax_cross_entropy(fl.tensor(y[idx]), h @ w3 + b3)
            loss.backward()
            optimizer.step(params)
            optimizer.zero_grad(params)

    return epoch


def flowlearn_cnn():
    import flowlearn as fl
    from flowlearn.core import losses, optimizers, ops

    x, y, _, _ = mnist()
    x = x.reshape(-1, 28, 28, 1)
    params = [fl.tensor(a, requires_grad=True) for pair in cnn_weights() for a in pair]
    optimizer = optimizers.Adam(learning_rate=1e-4)
    rng = numpy.random.default_rng(0)

    def step():
        idx = rng.integers(0, len(x), BATCH_CNN)
        k1, c1, k2, c2, w3, b3, w4, b4 = params
        with fl.training_mode(True):
            # conv + bias + ReLU as one op, as the Conv2D layer runs it (PyTorch's side passes its bias to
            # F.conv2d too; its ReLU stays a separate op there).
            h = ops.max_pool2d(ops.conv2d(fl.tensor(x[idx]), k1, padding="same", bias=c1, activation="relu"), 2)
            h = ops.max_pool2d(ops.conv2d(h, k2, padding="same", bias=c2, activation="relu"), 2)
            h = ops.relu(h.reshape((BATCH_CNN, -1)) @ w3 + b3)
            h = ops.dropout(h, 0.5, rng=rng)
            loss = losses.sparse_softmax_cross_entropy(fl.tensor(y[idx]), h @ w4 + b4)
        loss.backward()
        optimizer.step(params)
        optimizer.zero_grad(params)

    return step


# -- PyTorch --------------------------------------------------------------------------------------
def _torch_params(weights, conv_layers=0):
    import torch

    params = []
    for i, (w, b) in enumerate(weights):
        if i < conv_layers:
            w = w.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        else:
            w = w.T  # (in, out) -> (out, in) as nn.Linear stores it
        params += [torch.tensor(numpy.ascontiguousarray(w), requires_grad=True), torch.tensor(b, requires_grad=True)]
    return params


def torch_mlp():
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(THREADS)
    x, y, _, _ = mnist()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    params = _torch_params(mlp_weights())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    rng = numpy.random.default_rng(0)

    def epoch():
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), BATCH_MLP):
            idx = order[start:start + BATCH_MLP]
            w1, b1, w2, b2, w3, b3 = params
            h = F.relu(F.linear(xt[idx], w1, b1))
            h = F.relu(F.linear(h, w2, b2))
            loss = F.cross_entropy(F.linear(h, w3, b3), yt[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return epoch


def torch_cnn():
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(THREADS)
    x, y, _, _ = mnist()
    xt = torch.from_numpy(x.reshape(-1, 1, 28, 28))
    yt = torch.from_numpy(y)
    params = _torch_params(cnn_weights(), conv_layers=2)
    optimizer = torch.optim.Adam(params, lr=1e-4)
    rng = numpy.random.default_rng(0)

    def step():
        idx = torch.from_numpy(rng.integers(0, len(x), BATCH_CNN))
        k1, c1, k2, c2, w3, b3, w4, b4 = params
        h = F.max_pool2d(F.relu(F.conv2d(xt[idx], k1, c1, padding=2)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, k2, c2, padding=2)), 2)
        h = F.relu(F.linear(h.flatten(1), w3, b3))
        h = F.dropout(h, 0.5, training=True)
        loss = F.cross_entropy(F.linear(h, w4, b4), yt[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


# -- plain numpy: the floor for the MLP -----------------------------------------------------------
def numpy_mlp():
    x, y, _, _ = mnist()
    params = [a.copy() for pair in mlp_weights() for a in pair]
    m = [numpy.zeros_like(p) for p in params]
    v = [numpy.zeros_like(p) for p in params]
    rng = numpy.random.default_rng(0)
    state = {"t": 0}

    def epoch():
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH_MLP):
            idx = order[start:start + BATCH_MLP]
            xb, yb = x[idx], y[idx]
            w1, b1, w2, b2, w3, b3 = params
            h1 = numpy.maximum(xb @ w1 + b1, 0)
            h2 = numpy.maximum(h1 @ w2 + b2, 0)
            z = h2 @ w3 + b3
            z -= z.max(axis=1, keepdims=True)
            p = numpy.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            p[numpy.arange(len(yb)), yb] -= 1
            p /= len(yb)
            g3 = p
            d2 = (g3 @ w3.T) * (h2 > 0)
            d1 = (d2 @ w2.T) * (h1 > 0)
            grads = [xb.T @ d1, d1.sum(0), h1.T @ d2, d2.sum(0), h2.T @ g3, g3.sum(0)]
            state["t"] += 1
            t = state["t"]
            step = 1e-3 * numpy.sqrt(1 - 0.999**t) / (1 - 0.9**t)
            for p_, g, m_, v_ in zip(params, grads, m, v):
                m_ *= 0.9
                m_ += 0.1 * g
                v_ *= 0.999
                v_ += 0.001 * g * g
                p_ -= step * m_ / (numpy.sqrt(v_) + 1e-7)

    return epoch


WORKERS = {
    "mlp-flowlearn": (flowlearn_mlp, MLP_EPOCHS),
    "mlp-torch": (torch_mlp, MLP_EPOCHS),
    "mlp-numpy": (numpy_mlp, MLP_EPOCHS),
    "cnn-flowlearn": (flowlearn_cnn, CNN_STEPS),
    "cnn-torch": (torch_cnn, CNN_STEPS),
}


def worker(name):
    make, repeats = WORKERS[name]
    report(name, median_time(make(), repeats))


def main():
    results = {name: run_worker(__file__, name) for name in WORKERS}
    print(machine_line())
    mlp, mlp_t, mlp_np = results["mlp-flowlearn"], results["mlp-torch"], results["mlp-numpy"]
    cnn, cnn_t = results["cnn-flowlearn"], results["cnn-torch"]
    print(f"{'workload':34} {'flowlearn':>10} {'pytorch':>10} {'numpy':>10} {'ratio fl/pt':>12}")
    print(f"{'MLP epoch (s)':34} {mlp['median_s']:10.3f} {mlp_t['median_s']:10.3f} {mlp_np['median_s']:10.3f} "
          f"{mlp['median_s'] / mlp_t['median_s']:12.2f}")
    print(f"{'CNN step (ms)':34} {cnn['median_s'] * 1e3:10.1f} {cnn_t['median_s'] * 1e3:10.1f} {'-':>10} "
          f"{cnn['median_s'] / cnn_t['median_s']:12.2f}")
    print(f"{'MLP peak RSS (MB)':34} {mlp['peak_rss_mb']:10.0f} {mlp_t['peak_rss_mb']:10.0f} "
          f"{mlp_np['peak_rss_mb']:10.0f} {mlp['peak_rss_mb'] / mlp_t['peak_rss_mb']:12.2f}")
    print(f"{'CNN peak RSS (MB)':34} {cnn['peak_rss_mb']:10.0f} {cnn_t['peak_rss_mb']:10.0f} {'-':>10} "
          f"{cnn['peak_rss_mb'] / cnn_t['peak_rss_mb']:12.2f}")
    print(f"MLP flowlearn / plain numpy: {mlp['median_s'] / mlp_np['median_s']:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main_or_worker(main, worker)
