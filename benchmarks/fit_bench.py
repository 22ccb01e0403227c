"""``fit`` throughput (samples/s): flowlearn's Sequential vs the same models trained in PyTorch CPU
(and in Keras when it imports), side by side on the same data, batch sizes, initial weights and threads.

Workloads:
- MLP 784-256-128-10 (ReLU, softmax), Adam 1e-3, batch 128: one ``fit`` epoch over 8,000 MNIST rows;
- CNN conv5x5x32(same)-pool2-conv5x5x64(same)-pool2-dense1024-dropout0.5-dense10, Adam 1e-3, batch 100:
  one ``fit`` epoch over the first 1,000 rows (10 steps).
Every side shuffles each epoch and computes the sparse cross-entropy loss only (no metrics). The PyTorch
side is the usual loop (``nn.Sequential``, ``randperm`` batches, zero_grad / backward / step) with
``torch.set_num_threads(2)``; weights start from the same Glorot-uniform arrays everywhere (PyTorch's own
default init is smaller). Each side runs in its own process; medians of repeats.

Run: ``python benchmarks/fit_bench.py`` (a few minutes on 2 cores; best on a quiet machine).
"""
import json
import sys
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, main_or_worker, median_time, mnist, report, run_worker  # noqa: E402
from core_bench import cnn_weights, mlp_weights  # noqa: E402

THREADS = 2
MLP = {"batch": 128, "rows": 8000, "repeats": 5}
CNN = {"batch": 100, "rows": 1000, "repeats": 3}


def _data(kind):
    x, y, _, _ = mnist()
    spec = MLP if kind == "mlp" else CNN
    x, y = x[:spec["rows"]], y[:spec["rows"]]
    return (x if kind == "mlp" else x.reshape(-1, 28, 28, 1)), y, spec


def _flat_weights(kind):
    pairs = mlp_weights() if kind == "mlp" else cnn_weights()
    return [array for pair in pairs for array in pair]


# -- flowlearn ------------------------------------------------------------------------------------
def flowlearn_fit(kind):
    import flowlearn as fl
    from flowlearn.core import optimizers
    from flowlearn.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D

    x, y, spec = _data(kind)
    fl.layers.set_random_seed(0)
    if kind == "mlp":
        layers = [Input((784,)), Dense(256, activation="relu"), Dense(128, activation="relu"),
                  Dense(10, activation="softmax")]
    else:
        layers = [Input((28, 28, 1)), Conv2D(32, 5, padding="same", activation="relu"), MaxPooling2D(2),
                  Conv2D(64, 5, padding="same", activation="relu"), MaxPooling2D(2), Flatten(),
                  Dense(1024, activation="relu"), Dropout(0.5), Dense(10, activation="softmax")]
    model = fl.Sequential(layers)
    model.set_weights(_flat_weights(kind))
    model.compile(optimizers.Adam(learning_rate=1e-3), "sparse_categorical_crossentropy")
    return lambda: model.fit(x, y, batch_size=spec["batch"], epochs=1, verbose=0), spec


# -- PyTorch --------------------------------------------------------------------------------------
def torch_fit(kind):
    import torch
    from torch import nn

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    x, y, spec = _data(kind)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
        xt = torch.from_numpy(x)
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10),
        )
        xt = torch.from_numpy(numpy.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW, PyTorch's layout
    params = [p for p in model.parameters()]
    with torch.no_grad():
        for param, array in zip(params, _flat_weights(kind)):
            if array.ndim == 4:
                array = array.transpose(3, 2, 0, 1)  # HWIO -> OIHW
            elif array.ndim == 2:
                array = array.T
                if array.shape == (1024, 3136):
                    # flowlearn flattens NHWC (h, w, c); PyTorch flattens NCHW (c, h, w): reorder the inputs.
                    array = array.reshape(1024, 7, 7, 64).transpose(0, 3, 1, 2).reshape(1024, 3136)
            param.copy_(torch.from_numpy(numpy.ascontiguousarray(array)))
    yt = torch.from_numpy(y)
    optimizer = torch.optim.Adam(params, lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    batch = spec["batch"]

    def fit():
        model.train()
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), batch):
            idx = order[start:start + batch]
            loss = loss_fn(model(xt[idx]), yt[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return fit, spec


# -- Keras (only when it imports) -------------------------------------------------------------------
def keras_fit(kind):
    import importlib.util
    import os

    # Keras 3 runs on TensorFlow when it is installed, else on the PyTorch it shares with this benchmark.
    if importlib.util.find_spec("tensorflow") is None:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import torch

        torch.set_num_threads(THREADS)
    import keras

    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except ImportError:
        pass
    L = keras.layers
    x, y, spec = _data(kind)
    if kind == "mlp":
        layers = [keras.Input((784,)), L.Dense(256, activation="relu"), L.Dense(128, activation="relu"),
                  L.Dense(10, activation="softmax")]
    else:
        layers = [keras.Input((28, 28, 1)), L.Conv2D(32, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(64, 5, padding="same", activation="relu"), L.MaxPooling2D(2), L.Flatten(),
                  L.Dense(1024, activation="relu"), L.Dropout(0.5), L.Dense(10, activation="softmax")]
    model = keras.Sequential(layers)
    model.set_weights(_flat_weights(kind))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return lambda: model.fit(x, y, batch_size=spec["batch"], epochs=1, verbose=0), spec


SIDES = {"flowlearn": flowlearn_fit, "pytorch": torch_fit, "keras": keras_fit}


def worker(name):
    kind, side = name.split("-")
    fit, spec = SIDES[side](kind)
    result = median_time(fit, spec["repeats"])
    report(name, {**result, "samples_per_s": spec["rows"] / result["median_s"]})


def main():
    results = {}
    for kind in ("mlp", "cnn"):
        for side in SIDES:
            name = f"{kind}-{side}"
            try:
                results[name] = run_worker(__file__, name)
            except RuntimeError as error:
                if side != "keras":
                    raise
                results[name] = None
                print(f"{name}: skipped ({str(error).strip().splitlines()[-1]})", file=sys.stderr)
    print(machine_line())
    print(f"{'fit throughput (samples/s)':30} {'flowlearn':>10} {'pytorch':>10} {'keras':>10} {'fl/pt':>7}")
    for kind, label in (("mlp", "MLP, batch 128"), ("cnn", "CNN, batch 100")):
        fl_, pt = results[f"{kind}-flowlearn"], results[f"{kind}-pytorch"]
        ks = results[f"{kind}-keras"]
        keras_text = f"{ks['samples_per_s']:10.0f}" if ks else f"{'-':>10}"
        print(f"{label:30} {fl_['samples_per_s']:10.0f} {pt['samples_per_s']:10.0f} {keras_text} "
              f"{fl_['samples_per_s'] / pt['samples_per_s']:7.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main_or_worker(main, worker)
