"""Shared pieces of the benchmarks: data, timing, and running each side in its own process.

Each workload runs in a fresh subprocess so that its peak RSS (``ru_maxrss``) belongs to it alone,
and every side sees the same data, batch size and thread count.
"""
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "flowlearn" / "io" / "data" / "mnist10k.npz"
SHARED_DATA = ROOT.parent / "shared" / "data" / "mnist10k.npz"


def mnist(n_train=8000):
    """8,000 training and 2,000 test rows of the bundled MNIST subset, float32 in [0, 1]."""
    path = DATA if DATA.exists() else SHARED_DATA
    with numpy.load(path, allow_pickle=False) as data:
        x = data["X"].astype(numpy.float32) / 255.0
        y = data["y"].astype(numpy.int64)
    return x[:n_train], y[:n_train], x[8000:], y[8000:]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_time(fn, repeats):
    """``{"median_s", "times"}`` of ``repeats`` calls of ``fn``, after one warm-up call (first-touch
    allocations, BLAS threads, lazy builds)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "times": times}


def interleaved_times(variants, repeats):
    """``{name: [seconds, ...]}`` of ``repeats`` rounds in which every callable of ``variants`` (``{name: fn}``)
    runs once, in turn, so that a noisy host slows them all alike (warm-up calls are the caller's)."""
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def report(name, result):
    """Print a worker's result as the JSON line :func:`run_worker` reads, with the process's peak RSS."""
    print(json.dumps({"name": name, **result, "peak_rss_mb": result.get("peak_rss_mb", peak_rss_mb())}))


def run_worker(script, name, timeout=900):
    """Run ``script --worker name`` in a fresh process and return the JSON dict it prints last."""
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, str(script), "--worker", name], capture_output=True, text=True, env=env, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine_line():
    import threadpoolctl

    blas = [f"{i['internal_api']} {i['version']} ({i.get('architecture')}, {i['num_threads']} threads)"
            for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    return (f"{platform.node()} - {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, numpy {numpy.__version__}, {', '.join(blas)}")


def main_or_worker(main, worker):
    """The entry point of a benchmark script: ``--worker NAME`` runs one workload in this process (as
    :func:`run_worker` starts it), anything else the whole benchmark."""
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
