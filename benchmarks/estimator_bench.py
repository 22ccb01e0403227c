"""The model_fn Estimator against Sequential, side by side: training throughput and one-row predict.

Workloads (the Estimator speed goals):
- training the same MLP (64-128-64-10, relu, softmax cross-entropy from logits, Adam 1e-3, batch 32)
  on the 8x8 digits: ``Sequential.fit`` against an Estimator whose model_fn builds the network with
  ``fl.layers.dense`` and trains it with ``fl.train.AdamOptimizer(...).minimize`` (goal: the Estimator
  reaches at least 0.9x Sequential's samples/s). The Estimator's number includes everything
  ``train`` does per step: re-running the model_fn (scoped layer lookups, a fresh optimizer
  object), the input_fn's batches, the loop's callbacks, and the checkpoint that ``train`` writes when
  it ends (a durable write: file, folder and index fsynced, tens of milliseconds on some disks, so
  each round trains 10 epochs = 450 steps per call; its cost is also reported on its own). No other
  checkpoints, summaries off, as the fit side writes none either. The same calls are also timed up to that
  checkpoint (a hook notes when the last step ended), which is the per-step cost alone;
- one-row prediction with the weights already in memory: ``Sequential.predict(x[:1])`` against
  ``next(est.predict(numpy_input_fn({"x": x[:1]}, shuffle=False)))`` (goal: within 2x): the Estimator
  does not reload the checkpoint or rebuild anything per call; it checks model_dir's index once.

The two sides run in interleaved rounds (Sequential, Estimator, Sequential, ...) in one process, BLAS on
one thread; each number is the median over rounds, so a change of machine load weighs on both alike.

Run: ``python benchmarks/estimator_bench.py`` (about a minute on 2 cores); ``--quick`` for a rough run.
"""
import statistics
import sys
import tempfile
import time

import numpy
from threadpoolctl import threadpool_limits

import flowlearn as fl
from flowlearn.core import losses
from flowlearn.estimators import Estimator, EstimatorSpec, ModeKeys, RunConfig
from flowlearn.io import numpy_input_fn

QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 7
EPOCHS = 3 if QUICK else 10  # epochs of the 1,437 training digits per round (45 steps an epoch)
CALLS = 100 if QUICK else 500  # one-row predict calls per round
BATCH = 32


def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    return x[:1437], y[:1437].astype("int64")


def sequential():
    model = fl.Sequential([
        fl.layers.Dense(128, activation="relu"), fl.layers.Dense(64, activation="relu"),
        fl.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=fl.core.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def model_fn(features, labels, mode):
    h = fl.layers.dense(features["x"], 128, activation="relu")
    h = fl.layers.dense(h, 64, activation="relu")
    logits = fl.layers.dense(h, 10)
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions={"logits": logits})
    loss = losses.sparse_softmax_cross_entropy(labels, logits)
    if mode == ModeKeys.EVAL:
        return EstimatorSpec(mode, loss=loss)
    train_op = fl.train.AdamOptimizer(1e-3, epsilon=1e-7).minimize(loss, global_step=fl.train.get_global_step())
    return EstimatorSpec(mode, loss=loss, train_op=train_op)


class StepsEnd(fl.callbacks.Callback):
    """Notes when the last step of a ``train`` call ended: hooks run before the checkpoint saver."""

    def on_train_end(self, logs=None):
        self.time = time.perf_counter()


def estimator(model_dir):
    config = RunConfig(tf_random_seed=0, save_checkpoints_secs=None, save_summary_steps=None,
                       log_step_count_steps=None)
    return Estimator(model_fn, model_dir, config)


def main():
    x, y = digits()
    steps = EPOCHS * -(-len(x) // BATCH)
    model = sequential()
    est = estimator(tempfile.mkdtemp(prefix="estimator_bench_"))
    train_fn = numpy_input_fn({"x": x}, y, batch_size=BATCH, num_epochs=None, shuffle=True, seed=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)  # warm-up: builds, first allocations
    est.train(train_fn, steps=10)

    fit_rates, est_rates, step_rates = [], [], []
    steps_end = StepsEnd()
    for _ in range(ROUNDS):
        start = time.perf_counter()
        model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0)
        fit_rates.append(EPOCHS * len(x) / (time.perf_counter() - start))
        start = time.perf_counter()
        est.train(train_fn, steps=steps, hooks=[steps_end])
        est_rates.append(steps * BATCH / (time.perf_counter() - start))
        step_rates.append(steps * BATCH / (steps_end.time - start))  # the same call up to its checkpoint

    row = x[:1]
    one_row_fn = numpy_input_fn({"x": row}, shuffle=False)
    model.predict(row, verbose=0)
    next(est.predict(one_row_fn))
    seq_times, est_times = [], []
    for _ in range(ROUNDS):
        times = []
        for _ in range(CALLS):
            start = time.perf_counter()
            model.predict(row, verbose=0)
            times.append(time.perf_counter() - start)
        seq_times.append(statistics.median(times))
        times = []
        for _ in range(CALLS):
            start = time.perf_counter()
            next(est.predict(one_row_fn))
            times.append(time.perf_counter() - start)
        est_times.append(statistics.median(times))

    saves = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        est._save(est._global_step())
        saves.append(time.perf_counter() - start)

    fit_rate, est_rate = statistics.median(fit_rates), statistics.median(est_rates)
    step_rate, best_steps = statistics.median(step_rates), max(step_rates)
    seq_time, est_time = statistics.median(seq_times), statistics.median(est_times)
    # The best round of each side too: on a host shared with other work, the fastest round is the one
    # least disturbed, and its ratio moves less from run to run than the medians'.
    best_fit, best_est = max(fit_rates), max(est_rates)
    best_seq, best_pred = min(seq_times), min(est_times)
    print(f"rounds: {ROUNDS} interleaved, BLAS on 1 thread{' (--quick)' if QUICK else ''}")
    print(f"train MLP 64-128-64-10, batch {BATCH}: Sequential.fit {fit_rate:,.0f} samples/s, "
          f"Estimator.train {est_rate:,.0f} samples/s, ratio {est_rate / fit_rate:.2f} (goal >= 0.9); {steps} steps "
          f"per train call, whose end-of-train checkpoint takes {statistics.median(saves) * 1e3:.1f} ms; best rounds: "
          f"{best_fit:,.0f} and {best_est:,.0f} samples/s, ratio {best_est / best_fit:.2f} "
          f"({BATCH / best_fit * 1e6:.0f} and {BATCH / best_est * 1e6:.0f} us per step, the Estimator's with its "
          "checkpoint spread over the steps)")
    print(f"  Estimator.train up to its checkpoint: {step_rate:,.0f} samples/s, ratio {step_rate / fit_rate:.2f}; "
          f"best round {best_steps:,.0f} samples/s, ratio {best_steps / best_fit:.2f} "
          f"({BATCH / best_steps * 1e6:.0f} us per step)")
    print(f"one-row predict: Sequential.predict {seq_time * 1e6:,.0f} us, Estimator.predict {est_time * 1e6:,.0f} us, "
          f"ratio {est_time / seq_time:.2f} (goal <= 2); best rounds: {best_seq * 1e6:,.0f} and "
          f"{best_pred * 1e6:,.0f} us, ratio {best_pred / best_seq:.2f}")


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()
