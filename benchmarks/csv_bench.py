"""``csv_input_fn`` against a plain ``pandas.read_csv`` of the same files, and training step time with the
input pipeline prefetching against without.

1. Throughput (rows/s) of one pass over the same CSV files (``--files`` files of ``--rows`` rows: eight float
   features with five decimals and an integer label, ~70 bytes a row):
   - ``pandas.read_csv`` of each whole file, one after another (the baseline: everything in memory at once);
   - ``pandas.read_csv(chunksize=65536)``, the usual streaming idiom (no batching, no shuffling, no line
     numbers for bad rows);
   - ``csv_input_fn`` without shuffling, with shuffling (buffer 10,000 rows), and fully synchronous
     (``num_parallel_reads=1, prefetch_buffer_size=0``: no thread at all), batches of 1,024.
2. Step time of ``Sequential.fit`` (an 8-64-64-3 MLP, Adam, batches of ``--train-batch`` = 4,096 rows, so
   that reading a batch costs about as much as a step) fed by the input_fn, with a simulated per-step compute
   of ``--compute-ms`` (a sleep in ``on_train_batch_end``, which frees the GIL as BLAS does) standing for a
   larger model: prefetching (default settings) against the synchronous pipeline. With prefetching the
   reading hides behind the compute, so a step costs about max(read, compute) instead of read + compute.

Every variant runs in the same process, interleaved, ``--repeats`` times; medians are printed with their
ratios. Timings on a busy machine are noisy: compare ratios, and re-run on a quiet host for absolute numbers.

Run: ``python benchmarks/csv_bench.py`` (about a minute on two cores), or with ``--rows 50000`` for a quick look.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy
import pandas

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_times, machine_line  # noqa: E402

FEATURES = [f"f{i}" for i in range(8)]


def write_files(directory, n_files, rows, seed=0):
    rng = numpy.random.default_rng(seed)
    paths = []
    for k in range(n_files):
        frame = pandas.DataFrame(rng.normal(size=(rows, len(FEATURES))).astype(numpy.float32), columns=FEATURES)
        frame["label"] = rng.integers(0, 3, rows)
        path = Path(directory) / f"train-{k:02d}.csv"
        frame.to_csv(path, index=False, float_format="%.5f")
        paths.append(path)
    return paths


def read_pandas(paths):
    return sum(len(pandas.read_csv(path)) for path in paths)


def read_pandas_chunked(paths):
    return sum(len(chunk) for path in paths for chunk in pandas.read_csv(path, chunksize=65536))


def read_input_fn(input_fn):
    return sum(len(labels) for _, labels in input_fn())


def throughput(paths, repeats):
    from flowlearn.io import csv_input_fn

    def make(**options):
        return csv_input_fn([str(p) for p in paths], label_column="label", column_defaults={"label": 0},
                            batch_size=1024, seed=0, **options)

    variants = {
        "pandas.read_csv (whole files)": lambda: read_pandas(paths),
        "pandas.read_csv(chunksize=65536)": lambda: read_pandas_chunked(paths),
        "csv_input_fn, no shuffle": lambda: read_input_fn(make(shuffle=False)),
        "csv_input_fn, shuffle (buffer 10000)": lambda: read_input_fn(make(shuffle=True)),
        "csv_input_fn, no shuffle, synchronous": lambda: read_input_fn(
            make(shuffle=False, num_parallel_reads=1, prefetch_buffer_size=0)),
    }
    rows = {name: run() for name, run in variants.items()}  # warm-up: page cache, imports
    times = interleaved_times(variants, repeats)
    assert len(set(rows.values())) == 1, rows
    base = statistics.median(times["pandas.read_csv (whole files)"])
    print(f"\n1. One pass over {len(paths)} files, {rows[next(iter(rows))]:,} rows, "
          f"{sum(p.stat().st_size for p in paths) / 2**20:.0f} MiB (median of {repeats})")
    print(f"{'':42s} {'s':>7s} {'rows/s':>12s} {'vs read_csv':>12s}")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:42s} {median:7.3f} {rows[name] / median:12,.0f} {base / median:11.2f}x")


def step_times(paths, repeats, compute_ms, steps, batch_size):
    import flowlearn as fl
    from flowlearn.io import csv_input_fn

    class SimulatedCompute(fl.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(compute_ms / 1000.0)

    def source(**options):
        input_fn = csv_input_fn([str(p) for p in paths], label_column="label", column_defaults={"label": 0},
                                batch_size=batch_size, seed=0, num_epochs=None, **options)

        def stacked():
            return ((numpy.stack([features[name] for name in FEATURES], axis=1), labels)
                    for features, labels in input_fn())
        return stacked

    def run(**options):
        fl.layers.set_random_seed(0)
        model = fl.Sequential([fl.layers.Input((len(FEATURES),)), fl.layers.Dense(64, activation="relu"),
                               fl.layers.Dense(64, activation="relu"), fl.layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        start = time.perf_counter()
        model.fit(source(**options), epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[SimulatedCompute()])
        return (time.perf_counter() - start) / steps

    variants = {
        "prefetch (2 readers, 2 batches ahead)": {},
        "no prefetch (synchronous)": {"num_parallel_reads": 1, "prefetch_buffer_size": 0},
    }
    times = {name: [] for name in variants}
    for name, options in variants.items():
        run(**options)  # warm-up
    for _ in range(repeats):
        for name, options in variants.items():
            times[name].append(run(**options))
    print(f"\n2. Sequential.fit step time, batches of {batch_size}, {steps} steps, simulated compute "
          f"{compute_ms} ms a step (median of {repeats})")
    synchronous = statistics.median(times["no prefetch (synchronous)"])
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:42s} {median * 1000:7.2f} ms/step  {synchronous / median:5.2f}x the synchronous speed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rows", type=int, default=200_000, help="rows per file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compute-ms", type=float, default=5.0, help="simulated compute per training step")
    parser.add_argument("--steps", type=int, default=100, help="training steps per timed fit")
    parser.add_argument("--train-batch", type=int, default=4096, help="batch size of the training comparison")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as directory:
        paths = write_files(directory, args.files, args.rows)
        throughput(paths, args.repeats)
        step_times(paths, args.repeats, args.compute_ms, args.steps, args.train_batch)


if __name__ == "__main__":
    main()
