"""Demo: the worked examples' convolutional network on the MNIST digits bundled with flowlearn.

Run with ``flowlearn demo`` (or ``python -m flowlearn.examples.demo``). It trains
conv 5x5x32 - max-pool 2 - conv 5x5x64 - max-pool 2 - dense 1024 - dropout 0.5 - dense 10 on the
8,000 bundled training digits with a progress bar, then prints the accuracy on the 2,000 test digits
(about 0.98) and the time taken (about 35 s on two idle cores). No download: the digits ship with flowlearn.
It ends by exporting the trained network as a SavedModel, loading it back with ``fl.io.load_saved_model``
(the graph alone: no layer classes, no pickle) and predicting the first test digits with it.

``flowlearn demo --serve`` then serves the export with ``flowlearn serve``'s playground (draw a digit, see what the
network thinks, and the feature maps of its first convolution); an export already in the cache folder (or under
``--export-dir``) is served without training again: see :func:`serve_playground`.
"""
import contextlib
import os
import sys
import tempfile
import time

EPOCHS = 4
BATCH_SIZE = 50
QUICK_TRAIN_DIGITS = 2000  # --quick: a smoke run of seconds, not an accuracy claim
LEARNING_RATE = 1e-3
SHOWN_DIGITS = 10  # test digits predicted by the reloaded export
MODEL_NAME = "mnist"  # the NAME of /v1/models/NAME and /ui/NAME for --serve


def build_model():
    """The worked examples' CNN (3,274,634 parameters), compiled with Adam and sparse cross-entropy."""
    import flowlearn as fl
    from flowlearn.core import optimizers
    from flowlearn.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D

    model = fl.Sequential([
        Input((28, 28, 1)),
        Conv2D(32, 5, padding="same", activation="relu"), MaxPooling2D(2),
        Conv2D(64, 5, padding="same", activation="relu"), MaxPooling2D(2),
        Flatten(), Dense(1024, activation="relu"), Dropout(0.5), Dense(10, activation="softmax"),
    ])
    model.compile(optimizers.Adam(learning_rate=LEARNING_RATE), "sparse_categorical_crossentropy", ["accuracy"])
    return model


def learning_rate(epoch, epochs):
    """Adam's rate for ``epoch`` (0-based) of ``epochs``: 1e-3, then 3e-4 and 1e-4 for the last two epochs.

    At a constant 1e-3 the test accuracy bounces by about half a percent from epoch to epoch on 8,000
    digits; the two lower rates at the end settle it.
    """
    remaining = epochs - epoch
    if remaining == 1 and epochs >= 2:
        return LEARNING_RATE / 10
    if remaining == 2 and epochs >= 3:
        return LEARNING_RATE * 0.3
    return LEARNING_RATE


def run(epochs=None, quick=False, seed=0, batch_size=BATCH_SIZE, verbose=1, out=None, export_dir=None,
        debug_outputs=False):
    """Train the demo CNN, print its test accuracy and the time taken, and return the accuracy.

    Parameters
    ----------
    epochs : int, optional
        Passes over the training digits: 4 by default, 1 with ``quick``.
    quick : bool
        Train on the first 2,000 training digits only (a run of seconds, to see that everything works).
    seed : int
        Seeds the initial weights, the dropout masks and the shuffling: one seed, one run.
    batch_size : int
    verbose : {0, 1, 2}
        As in ``Sequential.fit``: 1 shows a progress bar per epoch (on stderr).
    out : file-like, optional
        Where the summary lines go (stdout when None).
    export_dir : str, optional
        Base folder of the SavedModel export (a new numbered version inside); None exports into a
        temporary folder that is removed at the end.
    debug_outputs : bool
        Export the ``debug`` and ``feature_maps`` signatures too (see ``fl.io.export_saved_model``).

    Returns
    -------
    float
        The accuracy on the 2,000 test digits.
    """
    import flowlearn as fl
    from flowlearn.io.datasets import load_mnist

    out = sys.stdout if out is None else out
    epochs = (1 if quick else EPOCHS) if epochs is None else epochs
    (x_train, y_train), (x_test, y_test) = load_mnist()
    if quick:
        x_train, y_train = x_train[:QUICK_TRAIN_DIGITS], y_train[:QUICK_TRAIN_DIGITS]
    x_train, x_test = x_train / 255.0, x_test / 255.0

    fl.layers.clear_session()
    fl.layers.set_random_seed(seed)
    model = build_model()
    print(f"flowlearn demo: a CNN with {model.count_params():,} parameters on {len(x_train):,} MNIST digits, "
          f"{epochs} epoch{'s' if epochs != 1 else ''} of batches of {batch_size}", file=out, flush=True)
    schedule = fl.callbacks.LearningRateScheduler(lambda epoch, rate: learning_rate(epoch, epochs))
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=[schedule])
    trained = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=500)
    total = time.perf_counter() - start
    print(f"test accuracy: {accuracy:.4f} on {len(x_test):,} digits", file=out)
    print(f"time: {total:.1f} s ({trained:.1f} s training, {total - trained:.1f} s testing)", file=out)
    export_and_reload(model, x_test[:SHOWN_DIGITS], y_test[:SHOWN_DIGITS], export_dir, out, debug_outputs)
    return accuracy


def export_and_reload(model, images, labels, export_dir, out, debug_outputs=False):
    """Export ``model`` as a SavedModel, load it back, predict ``images`` with it and print them beside ``labels``.

    Returns the predicted digits. The reloaded model must agree with the one in memory (checked here, so a
    demo that prints digits has also shown the export to be faithful).
    """
    import numpy

    import flowlearn as fl

    images = numpy.asarray(images, dtype=numpy.float32)
    with contextlib.ExitStack() as stack:
        base = export_dir if export_dir is not None else stack.enter_context(tempfile.TemporaryDirectory())
        version = fl.io.export_saved_model(model, base, debug_outputs=debug_outputs)
        loaded = fl.io.load_saved_model(version)
        (scores,) = loaded.predict(images).values()
        expected = model.predict(images)
        if not numpy.allclose(scores, expected, rtol=1e-5, atol=1e-6):
            raise AssertionError(f"the reloaded export predicts differently from the model in memory: largest "
                                 f"difference {numpy.abs(scores - expected).max():.3g}")
        where = version if export_dir is not None else f"{version} (a temporary folder; keep it with --export-dir)"
        print(f"exported: {where}", file=out)
    predicted = scores.argmax(axis=1)
    width = max(len("predicted"), len("true"))
    print(f"reloaded with fl.io.load_saved_model, test digits 1-{len(images)}:", file=out)
    print(f"  {'predicted':<{width}}  {' '.join(map(str, predicted.tolist()))}", file=out)
    print(f"  {'true':<{width}}  {' '.join(map(str, numpy.asarray(labels).tolist()))}", file=out)
    return predicted


def default_cache_dir():
    """Where ``--serve`` keeps the demo's export between runs: ``$XDG_CACHE_HOME/flowlearn/demo-mnist`` (by default
    ``~/.cache/flowlearn/demo-mnist``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "flowlearn", "demo-mnist")


def reusable_export(base):
    """The newest numbered version under ``base`` that loads (None when there is none)."""
    import flowlearn as fl

    if not os.path.isdir(base):
        return None
    numbers = sorted((int(n) for n in os.listdir(base) if n.isdecimal() and os.path.isdir(os.path.join(base, n))),
                     reverse=True)
    for number in numbers:
        path = os.path.join(base, str(number))
        try:
            fl.io.load_saved_model(path)
        except ValueError:
            continue  # a damaged or foreign folder: look further, train if none loads
        return path
    return None


def serve_playground(export_dir=None, host="127.0.0.1", port=8501, out=None, serve=None, **train_options):
    """Serve the demo CNN with the playground of ``flowlearn serve``; blocks until interrupted.

    The newest export under ``export_dir`` (default :func:`default_cache_dir`) that loads is served as it is;
    without one, the CNN is trained (``train_options`` as :func:`run`) and exported there first, with its
    ``feature_maps`` signature, so the page also draws the first convolution's activations.

    Returns the base folder served (once the server stops).
    """
    from ..commands.serve import playground_url

    out = sys.stdout if out is None else out
    base = os.path.abspath(export_dir if export_dir is not None else default_cache_dir())
    version = reusable_export(base)
    if version is not None:
        print(f"flowlearn demo: serving the export {version} (delete it, or give another --export-dir, to train "
              "again)", file=out, flush=True)
    else:
        os.makedirs(base, exist_ok=True)
        run(export_dir=base, out=out, debug_outputs=True, **train_options)
    if serve is None:
        from ..io.serving import serve
    print(f"playground: {playground_url(host, port, MODEL_NAME)}  (Ctrl-C stops the server)", file=out, flush=True)
    serve(base, MODEL_NAME, host=host, port=port)
    return base


if __name__ == "__main__":
    run()
