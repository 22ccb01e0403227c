"""``image_input_fn`` against a plain single-threaded PIL loop over the same JPEG files, and training step time
with the pipeline feeding a CNN against the same CNN on in-memory arrays.

The files: ``--images`` JPEGs (quality 90) cut from scikit-learn's two bundled sample photos (``china.jpg``,
``flower.jpg``, 427x640 each; one class folder per photo) as square windows of random side 112-224 px at random
places, written once to a temporary folder. Each is decoded, converted to RGB and resized to 96x96x3 (bilinear),
as the face examples of issue 11 do with their photos.

1. Throughput (images/s) of one pass over the files, in a new random order, in batches of ``--batch`` (32):
   - *PIL loop* (the baseline): one thread, for each file ``Image.open``, ``convert("RGB")``, ``resize``, float32
     / 255, then the augmentations applied to that one image, and every ``--batch`` images ``numpy.stack``;
   - ``image_input_fn`` with its defaults (a decoding thread per core, batches made and augmented by the same
     threads, a prefetch thread), ``num_parallel_calls`` the process's cores (see ``--cores``);
   - ``image_input_fn`` on one thread without prefetch (``num_parallel_calls=1, prefetch_buffer_size=0``): the
     pipeline's batching without its parallelism.
   Each with the augmentation of the face examples, ``{"flip_left_right": True, "brightness": 0.2,
   "contrast": (0.8, 1.2), "saturation": (0.8, 1.2), "hue": 0.05}``, and without (decoding alone). The PIL loop
   augments each image with the same ops (``flowlearn.io.augmentation``'s ``random_*`` on one (96, 96, 3)
   image, in the order the pipeline applies them, saturation and hue in the one trip through HSV that the
   pipeline makes for the pair), so both sides do the same arithmetic and the ratio measures the pipeline
   (threads, batched augmentation, prefetch), not two implementations of HSV. Goal: >= 1.6x the
   PIL loop with augmentation on 2 cores (both cores busy).
2. Step time of ``Sequential.fit`` on a small CNN (conv3x3x16 - pool - conv3x3x32 - pool - conv3x3x64 - pool -
   dense64 - dense2, Adam, batches of ``--batch``; ``--filters 32,64,128`` for a heavier one) over ``--steps``
   steps: fed by ``image_input_fn`` (``num_epochs=None``, with and without augmentation, and the augmenting
   pipeline synchronous on one thread), against the same network on in-memory arrays of the already decoded images
   (``load_images``, before the clock starts). The step time is the mean interval between the ends of the first and
   the last step, so the network's build and the pipeline's first batch are left out. Goal: the augmenting pipeline
   within 10% of the arrays (decoding hidden behind the training step by the prefetch).

Every variant runs in this one process, interleaved (each round starting with the next one), ``--rounds`` times;
medians are printed with the spread of the rounds and the ratios, and next to them the CPU time (user + system, all
the process's threads) each image or step took: on a loaded host, where the wall-clock times swing with the
neighbours, the CPU times stay comparable, the system share shows page faults, and CPU / wall time says how many
cores a variant kept busy. ``--busy`` also runs each round next to one competing busy process (a ``while True:
pass`` loop pinned to the same CPUs, as in ``busy_host_bench.py``), interleaved with the quiet runs. Timings on a
busy machine are noisy: compare ratios, and rerun on a quiet host for absolute numbers.

Run: ``python benchmarks/image_bench.py`` (about two minutes on 2 quiet cores; twice that with ``--busy``), or
``--quick`` for a look in about half a minute (600 images, 12 steps, 2 rounds). ``--cores N`` pins the process
(and BLAS's threads) to N of the CPUs it may use (default 2, the machines the goals are set for; 0: all).
"""
import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line  # noqa: E402

IMAGE_SIZE = (96, 96)
# The augmentation of the face examples; dict order does not matter, the pipeline applies its own order.
AUGMENT = {"flip_left_right": True, "brightness": 0.2, "contrast": (0.8, 1.2), "saturation": (0.8, 1.2),
           "hue": 0.05}
PLAIN, AUGMENTED = "decode only", "decode + augment"
PIL_LOOP, PIPELINE = "PIL loop, 1 thread", "image_input_fn (defaults)"
ARRAYS, AUGMENTING_FEED = "in-memory arrays (decoded before)", "image_input_fn + augment (defaults)"


# -- the files ---------------------------------------------------------------------------------------------------
def write_images(directory, n, seed=0):
    """``n`` JPEG windows of the two sample photos in the class folders ``china`` and ``flower`` of ``directory``."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    rng = numpy.random.default_rng(seed)
    for k in range(n):
        label = k % 2
        photo = photos.images[label]
        side = int(rng.integers(112, 225))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        folder = Path(directory) / Path(photos.filenames[label]).stem
        folder.mkdir(exist_ok=True)
        Image.fromarray(photo[top:top + side, left:left + side]).save(folder / f"{k:05d}.jpg", quality=90)


# -- 1. throughput ------------------------------------------------------------------------------------------------
def augment_one(image, rng):
    """The pipeline's augmentation of one image, op by op, in the order image_input_fn applies a dict's."""
    from flowlearn.io import augmentation as ops

    image = ops.random_flip_left_right(image, seed=rng)
    image = ops.random_brightness(image, AUGMENT["brightness"], seed=rng)
    image = ops.random_contrast(image, *AUGMENT["contrast"], seed=rng)
    # Saturation then hue in one trip through HSV, as the pipeline fuses them (the public ops make two trips):
    # the same arithmetic on both sides.
    colour = ops._saturation_and_hue(ops._saturation(*AUGMENT["saturation"]), ops._hue(AUGMENT["hue"]))
    factor, delta = (numpy.asarray(v, numpy.float32) for v in colour.draw(rng, 1))
    batch = image[None]
    colour.apply(numpy, batch, batch, factor, delta)
    return image


def pil_loop(paths, labels, batch_size, augment, seed=0):
    """One pass the plain way: decode, resize, scale and augment each file on this thread; stack batches."""
    from PIL import Image

    rng = numpy.random.default_rng(seed)
    order = rng.permutation(len(paths))
    height, width = IMAGE_SIZE
    count = 0
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        images = []
        for index in chosen:
            with Image.open(paths[index]) as image:
                image = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
            pixels = numpy.asarray(image, dtype=numpy.float32) / numpy.float32(255)
            images.append(augment_one(pixels, rng) if augment else pixels)
        batch = (numpy.stack(images), labels[chosen])
        count += len(batch[0])
    return count


def pipeline(directory, batch_size, augment, **options):
    from flowlearn.io import image_input_fn

    input_fn = image_input_fn(directory, image_size=IMAGE_SIZE, batch_size=batch_size, num_epochs=1, shuffle=True,
                              seed=0, augment=AUGMENT if augment else None, **options)
    return sum(len(labels) for _, labels in input_fn())


def throughput_variants(directory, batch_size):
    from flowlearn.io import image_input_fn

    listing = image_input_fn(directory, image_size=IMAGE_SIZE)  # the same files and labels for both sides
    paths, labels = listing.file_paths, listing.labels
    variants = {}
    for kind, augment in ((AUGMENTED, True), (PLAIN, False)):
        variants[(kind, PIL_LOOP)] = lambda augment=augment: pil_loop(paths, labels, batch_size, augment)
        variants[(kind, PIPELINE)] = lambda augment=augment: pipeline(directory, batch_size, augment)
        variants[(kind, "image_input_fn, 1 thread, no prefetch")] = lambda augment=augment: pipeline(
            directory, batch_size, augment, num_parallel_calls=1, prefetch_buffer_size=0)
    return variants, len(paths)


# -- 2. training step time ---------------------------------------------------------------------------------------
FILTERS = (16, 32, 64)


def cnn(filters=FILTERS):
    import flowlearn as fl

    fl.layers.set_random_seed(0)
    layers = [fl.layers.Input(IMAGE_SIZE + (3,))]
    for width in filters:
        layers += [fl.layers.Conv2D(width, 3, padding="same", activation="relu"), fl.layers.MaxPooling2D(2)]
    model = fl.Sequential(layers + [fl.layers.Flatten(), fl.layers.Dense(64, activation="relu"), fl.layers.Dense(2)])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def step_time(fit, steps, filters=FILTERS):
    """``(wall, cpu)`` seconds per step of ``fit(model, steps, callbacks)``, from the end of its first step to the
    end of its last (the network's build and the pipeline's first batch left out); cpu is the process's
    (user, system) time, all threads."""
    import flowlearn as fl

    ends = []

    class StepClock(fl.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append((time.perf_counter(), _cpu()))

    fit(cnn(filters), steps, [StepClock()])
    (wall_0, cpu_0), (wall_1, cpu_1) = ends[0], ends[-1]
    return (wall_1 - wall_0) / (len(ends) - 1), (cpu_1 - cpu_0) / (len(ends) - 1)


def training_variants(directory, batch_size, x, y):
    from flowlearn.io import image_input_fn

    def from_arrays(model, steps, callbacks):
        model.fit(x[:steps * batch_size], y[:steps * batch_size], batch_size=batch_size, epochs=1, shuffle=True,
                  verbose=0, callbacks=callbacks)

    def from_pipeline(augment, **options):
        def fit(model, steps, callbacks):
            input_fn = image_input_fn(directory, image_size=IMAGE_SIZE, batch_size=batch_size, num_epochs=None,
                                      seed=0, augment=AUGMENT if augment else None, **options)
            model.fit(input_fn, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=callbacks)
        return fit

    return {
        ARRAYS: from_arrays,
        AUGMENTING_FEED: from_pipeline(True),
        "image_input_fn, no augment": from_pipeline(False),
        "image_input_fn + augment, 1 thread, no prefetch": from_pipeline(
            True, num_parallel_calls=1, prefetch_buffer_size=0),
    }


# -- running and printing ------------------------------------------------------------------------------------------
def _cpu():
    """The process's (user, system) CPU seconds so far, all threads, as an array (so that two subtract)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)  # microseconds; os.times() counts 10 ms clock ticks
    return numpy.array([usage.ru_utime, usage.ru_stime])


def _cpu_cells(cpus, walls, scale, digits):
    """Median user + system time over rounds, with the system part (page faults, thread hand-offs), and the
    median number of cores kept busy (CPU time / wall time)."""
    user, system = (statistics.median(sample[k] for sample in cpus) * scale for k in (0, 1))
    cores = statistics.median(sum(cpu) / wall for cpu, wall in zip(cpus, walls))
    return f"{user + system:.{digits}f} ({system:.{digits}f} sys) {cores:5.2f}"


def _rotated(items, shift):
    """``items`` starting at ``shift`` (modulo their number): each round starts with another variant, so that
    none always runs first (after the previous section) or always follows the same one."""
    items = list(items)
    shift %= max(len(items), 1)
    return items[shift:] + items[:shift]


class _Quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _spread(values, scale=1.0, digits=0):
    return (f"{statistics.median(values) * scale:,.{digits}f} ({min(values) * scale:,.{digits}f}-"
            f"{max(values) * scale:,.{digits}f})")


def print_throughput(state, walls, cpus, n_images, rounds):
    print(f"\n1. {state} host: one pass over {n_images:,} JPEGs to 96x96x3 float32 batches, median (min-max) of "
          f"{rounds} rounds; ratio: the PIL loop's median time of the same kind / this one's; CPU: user + system "
          "time of all the process's threads; cores: CPU time / wall time")
    for kind in (AUGMENTED, PLAIN):
        base = statistics.median(walls[(state, kind, PIL_LOOP)])
        print(f"  {kind:38s} {'images/s':>22s} {'ratio':>6s} {'CPU ms/image':>20s} {'cores':>5s}")
        for (state_, kind_, name), times in walls.items():
            if (state_, kind_) == (state, kind):
                print(f"    {name:36s} {_spread([n_images / t for t in times]):>22s} "
                      f"{base / statistics.median(times):5.2f}x "
                      f"{_cpu_cells(cpus[(state, kind, name)], times, 1000 / n_images, 2):>26s}")


def print_steps(state, walls, cpus, steps, batch_size, rounds):
    print(f"\n2. {state} host: Sequential CNN step time, batches of {batch_size}, {steps} steps a fit, median "
          f"(min-max) of {rounds} rounds; ratio: this / in-memory arrays (goal <= 1.10 with the defaults); "
          "cores: CPU time / wall time (what the arrays' step leaves of the CPUs is what a prefetch can hide "
          "decoding in)")
    base = statistics.median(walls[(state, ARRAYS)])
    print(f"    {'':48s} {'ms/step':>22s} {'ratio':>6s} {'CPU ms/step':>20s} {'cores':>5s}")
    for (state_, name), times in walls.items():
        if state_ == state:
            print(f"    {name:48s} {_spread(times, 1000, 1):>22s} {statistics.median(times) / base:5.2f}x "
                  f"{_cpu_cells(cpus[(state, name)], times, 1000, 1):>26s}")


def print_goals(state, pass_walls, step_walls):
    speedup = (statistics.median(pass_walls[(state, AUGMENTED, PIL_LOOP)])
               / statistics.median(pass_walls[(state, AUGMENTED, PIPELINE)]))
    slowdown = statistics.median(step_walls[(state, AUGMENTING_FEED)]) / statistics.median(step_walls[(state, ARRAYS)])
    print(f"\ngoals, {state} host: decode + augment {speedup:.2f}x the PIL loop (wanted >= 1.6: "
          f"{'met' if speedup >= 1.6 else 'not met'}); step fed by the augmenting pipeline {slowdown:.2f}x the "
          f"arrays' (wanted <= 1.10: {'met' if slowdown <= 1.10 else 'not met'})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="JPEG files written (half per class)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="training steps a timed fit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--filters", type=lambda text: tuple(int(f) for f in text.split(",")), default=FILTERS,
                        help="filters of the CNN's conv blocks, e.g. 32,64,128 for a heavier step (default "
                             "16,32,64)")
    parser.add_argument("--busy", action="store_true", help="also run every round next to a busy process")
    parser.add_argument("--cores", type=int, default=2, help="CPUs to pin this process to (0: all it may use)")
    parser.add_argument("--quick", action="store_true", help="600 images, 12 steps, 2 rounds")
    parser.add_argument("--parts", default="1,2", help="which comparisons to run: 1 (throughput), 2 (step time)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.steps, args.rounds = 600, 12, 2
    if args.images < args.steps * args.batch:
        parser.error(f"--images {args.images} holds fewer than the {args.steps} batches of {args.batch} a fit "
                     "on arrays takes")
    allowed = sorted(os.sched_getaffinity(0))
    if args.cores and args.cores < len(allowed):
        # Before flowlearn and image_input_fn size their thread pools, which they do from the affinity; BLAS
        # started its threads at import, one per CPU of the machine: hold it to as many.
        import threadpoolctl

        os.sched_setaffinity(0, allowed[:args.cores])
        threadpoolctl.threadpool_limits(args.cores)
    states = ["quiet", "busy"] if args.busy else ["quiet"]

    from busy_host_bench import _BusyProcess

    from flowlearn.io import load_images

    print(machine_line())
    print(f"pinned to {len(os.sched_getaffinity(0))} CPUs; {args.images} images, batches of {args.batch}, "
          f"{args.steps} steps a fit, CNN filters {args.filters}, {args.rounds} rounds, hosts: {', '.join(states)}")
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        write_images(directory, args.images)
        # Decoding every file once also warms the page cache for both sides.
        x, y, _ = load_images(directory, image_size=IMAGE_SIZE)
        print(f"wrote and read {args.images} JPEGs in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        parts = set(args.parts.split(","))
        passes, n_images = throughput_variants(directory, args.batch)
        passes = passes if "1" in parts else {}
        fits = training_variants(directory, args.batch, x, y) if "2" in parts else {}
        for fit in fits.values():  # warm-up: imports, thread pools, first-touch allocations
            step_time(fit, 3, args.filters)
        pass_walls, pass_cpus, step_walls, step_cpus = {}, {}, {}, {}
        for round_ in range(args.rounds):
            for state in states:
                with _BusyProcess() if state == "busy" else _Quiet():
                    for key, run in _rotated(passes.items(), round_):
                        wall, cpu = time.perf_counter(), _cpu()
                        assert run() == n_images
                        pass_walls.setdefault((state,) + key, []).append(time.perf_counter() - wall)
                        pass_cpus.setdefault((state,) + key, []).append(_cpu() - cpu)
                    for name, fit in _rotated(fits.items(), round_):
                        wall, cpu = step_time(fit, args.steps, args.filters)
                        step_walls.setdefault((state, name), []).append(wall)
                        step_cpus.setdefault((state, name), []).append(cpu)
            print(f"round {round_ + 1} done at {time.perf_counter() - start:.0f} s", file=sys.stderr)
    for state in states:
        if passes:
            print_throughput(state, pass_walls, pass_cpus, n_images, args.rounds)
        if fits:
            print_steps(state, step_walls, step_cpus, args.steps, args.batch, args.rounds)
        if passes and fits:
            print_goals(state, pass_walls, step_walls)


if __name__ == "__main__":
    main()
