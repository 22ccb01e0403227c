"""Micro-benchmark, run by hand: forward + backward of the two conv blocks of the benchmark CNN.

28x28x1 -> conv5x5x32 (same) -> relu -> max-pool 2 -> conv5x5x64 (same) -> relu -> max-pool 2, batch
100, flowlearn next to PyTorch (2 threads) in the same process, on the same MNIST batch. The input
needs no gradient (as in training), both kernels do; no biases on either side.

Run: ``python benchmarks/conv_micro.py [--repeats 20] [--profile]``; ``--profile`` adds the time
spent in each flowlearn primitive's forward and backward.
"""
import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, mnist  # noqa: E402

BATCH = 100


def weights(seed=0):
    rng = numpy.random.default_rng(seed)
    shapes = [(5, 5, 1, 32), (5, 5, 32, 64)]
    return [rng.uniform(-0.1, 0.1, shape).astype(numpy.float32) for shape in shapes]


def flowlearn_step():
    import flowlearn as fl
    from flowlearn.core import ops

    relu = getattr(ops, "relu", None) or (lambda t: ops.maximum(t, 0.0))
    images = fl.tensor(mnist()[0][:BATCH].reshape(BATCH, 28, 28, 1))
    k1, k2 = (fl.tensor(w, requires_grad=True) for w in weights())
    out_grad = fl.tensor(numpy.ones((BATCH, 7, 7, 64), numpy.float32))

    def step():
        h = ops.max_pool2d(relu(ops.conv2d(images, k1, padding="same")))
        y = ops.max_pool2d(relu(ops.conv2d(h, k2, padding="same")))
        y.backward(out_grad)
        k1.grad = k2.grad = None

    return step


def torch_step():
    import torch

    torch.set_num_threads(2)
    F = torch.nn.functional
    images = torch.from_numpy(mnist()[0][:BATCH].reshape(BATCH, 1, 28, 28))
    k1, k2 = (torch.tensor(w.transpose(3, 2, 0, 1).copy(), requires_grad=True) for w in weights())
    out_grad = torch.ones((BATCH, 64, 7, 7))

    def step():
        h = F.max_pool2d(F.relu(F.conv2d(images, k1, padding=2)), 2)
        y = F.max_pool2d(F.relu(F.conv2d(h, k2, padding=2)), 2)
        y.backward(out_grad)
        k1.grad = k2.grad = None

    return step


def time_ms(step, repeats):
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def profile(step, repeats):
    """Best ms per step spent in each primitive's forward and backward."""
    from flowlearn.core.primitive import REGISTRY

    spent = collections.defaultdict(float)
    originals = {}

    def timed(label, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += (time.perf_counter() - start) * 1e3
        return staticmethod(wrapper)

    for name, cls in REGISTRY.items():
        originals[cls] = (cls.forward, cls.backward)
        cls.forward = timed(f"{name}.forward", cls.forward)
        cls.backward = timed(f"{name}.backward", cls.backward)
    per_step = collections.defaultdict(list)
    try:
        step()
        for _ in range(repeats):
            spent.clear()
            step()
            for label, ms in spent.items():
                per_step[label].append(ms)
    finally:
        for cls, (forward, backward) in originals.items():
            cls.forward, cls.backward = staticmethod(forward), staticmethod(backward)
    medians = {label: min(times) for label, times in per_step.items()}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(machine_line())
    fl_step, torch_step_ = flowlearn_step(), torch_step()
    results = {}
    # Interleave the two sides so that a noisy neighbour slows both alike.
    for _ in range(2):
        for name, step in [("flowlearn", fl_step), ("torch", torch_step_)]:
            median, best = time_ms(step, args.repeats // 2)
            previous = results.get(name, (float("inf"), float("inf")))
            results[name] = (min(previous[0], median), min(previous[1], best))
    for name, (median, best) in results.items():
        print(f"{name:>10}: {median:7.1f} ms/step median, {best:7.1f} best")
    print(f"{'ratio':>10}: {results['flowlearn'][0] / results['torch'][0]:.2f}x (median)")
    if args.profile:
        print("flowlearn per primitive (best ms/step):")
        for label, ms in profile(fl_step, args.repeats).items():
            print(f"  {label:<28}{ms:7.2f}")


if __name__ == "__main__":
    main()
