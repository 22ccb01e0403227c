"""Image files as training data: ``image_input_fn`` streams them as batches, ``load_images`` reads them into arrays.

The files come from a directory with one sub-folder per class (class names sorted give the labels, as Keras'
``image_dataset_from_directory``) or from a CSV file listing a path and a label per image. The input_fn is a chain
of small stages, each bounded in memory (tf.data's map / batch / prefetch, without TensorFlow):

1. *order*: each pass visits the file list in a new permutation when shuffling (the list of paths is all that is
   held; no image is decoded ahead of its turn);
2. *decode*: ``num_parallel_calls`` worker threads open, decode (JPEG, PNG, BMP, GIF through Pillow, which
   releases the GIL while it decodes and resizes), convert to the channels asked for and resize each image; a
   window of a few images per worker is in flight, and the results are taken in file order, so the batches
   never depend on the threads' timing;
3. *batch*: ``batch_size`` images as one float32 array in [0, 1] (NHWC), with their labels; an unreadable file
   raises, or is skipped and counted (``on_error``), the batch filled from the next files;
4. *augment*: random flips, brightness, contrast, hue, saturation, crops or rotations of each batch
   (:mod:`flowlearn.io.augmentation`), in training mode only. Batches are made and augmented by the same worker
   threads, several at once, each with a generator spawned in batch order from the one seeded at the call;
5. *prefetch*: a background thread keeps ``prefetch_buffer_size`` batches ready while the model trains.
"""
import collections
import itertools
import numbers
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy

from ..layers.data_adapter import INFINITE, UNKNOWN
from . import augmentation
from ._prefetch import BATCH, WARNING, delivered, prefetched
from .inputs import _check_settings, _count, _passes, _seed_or_drawn

__all__ = ["IMAGE_EXTENSIONS", "ImageBatches", "ImageInputFn", "image_input_fn", "load_images"]

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_THREAD_PREFIX = "flowlearn-images"
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
_LABEL_MODES = ("int", "categorical", "binary", None)
# The keys of a dict `augment`, in the order they are applied: geometry first, then colour.
_AUGMENT_KEYS = ("crop", "rotation", "flip_left_right", "flip_up_down", "brightness", "contrast", "saturation",
                 "hue")
# flowlearn.estimators.ModeKeys' values (io does not import estimators).
_TRAIN = "train"
_MODE_KEYS = (_TRAIN, "eval", "infer")


def image_input_fn(source, image_size=(256, 256), channels=3, batch_size=32, num_epochs=1, shuffle=True, seed=None,
                   augment=None, num_parallel_calls=None, label_mode="int", crop_to_aspect_ratio=False,
                   on_error="raise", class_names=None, path_column="path", label_column="label", name_column=None,
                   header=True, interpolation="bilinear", prefetch_buffer_size=2):
    """An input_fn that decodes image files in worker threads and yields ``(images, labels)`` batches.

    Parameters
    ----------
    source : str or path
        A directory with one sub-folder per class (the images in each, at any depth, with the extensions of
        :data:`IMAGE_EXTENSIONS`; other files are ignored), or a ``.csv`` file with a column of image paths
        (relative paths are taken from the CSV's folder) and a column of labels.
    image_size : (int, int), default (256, 256)
        (height, width) every image is resized to.
    channels : {1, 3, 4}, default 3
        Grayscale, RGB or RGBA; each image is converted to it.
    batch_size : int, default 32
        Images per batch; the last batch of each pass may be smaller.
    num_epochs : int or None, default 1
        Passes over the files; None repeats forever (a trainer then needs ``steps``).
    shuffle : bool, default True
        Visit the files in a new random order each pass.
    seed : int, optional
        Seeds the shuffling and the augmentation: every call of the input_fn gives the same batches, whatever
        the number of threads. Default: drawn at each call from the stream that
        :func:`flowlearn.layers.set_random_seed` seeds.
    augment : None, dict or callable
        Random augmentation of training batches. A dict of any of ``"flip_left_right": True``,
        ``"flip_up_down": True``, ``"brightness": max_delta``, ``"contrast": (lower, upper)``,
        ``"hue": max_delta``, ``"saturation": (lower, upper)``, ``"rotation": max_degrees`` and
        ``"crop": (height, width)`` (a random window in training, the central one otherwise), applied in that
        order (crop and rotation first); or a callable ``augment(images, rng) -> images`` taking a float32 NHWC
        batch and a ``numpy.random.Generator`` (it runs in the worker threads, on several batches at once, each
        batch with a generator of its own). Applied only in training: see *Returns*.
    num_parallel_calls : int, optional
        Decoding threads; default: the number of CPUs this process may use.
    label_mode : {"int", "categorical", "binary", None}, default "int"
        Labels as int64 class indices, float32 one-hot rows, float32 ``(n, 1)`` zeros and ones (two classes), or
        None (no labels, for prediction).
    crop_to_aspect_ratio : bool, default False
        Crop each image to the largest central window of ``image_size``'s aspect ratio before resizing, instead
        of stretching it.
    on_error : {"raise", "skip"}, default "raise"
        A file that cannot be read or decoded raises ``ValueError("<path>: cannot read the image (...)")``, or
        with ``"skip"`` is left out: a warning at the end of each pass gives the count and the first such file.
    class_names : list of str, optional
        The classes, in label order: for a directory, the sub-folders to read (default: all, sorted); for a CSV of
        text labels, their order (default: sorted); for a CSV of integer labels, the name of each.
    path_column, label_column : str or int, default "path", "label"
        The CSV columns holding the paths and the labels, by name or position.
    name_column : str or int, optional
        A CSV column holding each integer label's class name (as the ``path,name,label`` lists of the face
        examples); it gives ``class_names``.
    header : bool, default True
        Whether the CSV starts with a line of column names.
    interpolation : str, default "bilinear"
        Pillow's resampling filter: "nearest", "bilinear", "bicubic", "lanczos", "box" or "hamming".
    prefetch_buffer_size : int, default 2
        Batches prepared ahead by a background thread; 0 prepares each batch when it is asked for.

    Returns
    -------
    input_fn : ImageInputFn
        ``input_fn(mode=None)`` -> :class:`ImageBatches`, an iterable of ``(images, labels)`` batches, images a
        float32 array ``(n, height, width, channels)`` in [0, 1]. Its ``class_names`` attribute maps labels back
        to names. ``augment`` applies when the input_fn is called in training mode: ``mode="train"`` (what the
        model_fn :class:`~flowlearn.estimators.Estimator` passes to ``train``), or no ``mode`` with
        ``shuffle=True`` (a training input_fn, as ``Sequential.fit`` calls it). ``Estimator.evaluate`` and
        ``predict`` pass ``"eval"`` and ``"infer"``, and an input_fn made with ``shuffle=False`` is an evaluation
        input_fn: their batches are never augmented.

    Examples
    --------
    >>> train_fn = image_input_fn("faces/train", image_size=(96, 96), batch_size=32, seed=0,
    ...                           augment={"flip_left_right": True, "brightness": 0.2})  # doctest: +SKIP
    >>> train_fn.class_names  # doctest: +SKIP
    ['alice', 'bob', 'carol']
    >>> images, labels = next(iter(train_fn()))  # doctest: +SKIP
    """
    owner = "image_input_fn"
    _pillow(owner)
    options = _Options(owner, image_size, channels, batch_size, num_epochs, shuffle, seed, num_parallel_calls,
                       label_mode, crop_to_aspect_ratio, on_error, interpolation, prefetch_buffer_size)
    listing = _list_files(owner, source, class_names, path_column, label_column, name_column, header)
    if label_mode == "binary" and len(listing.class_names) != 2:
        raise ValueError(f"{owner}: label_mode='binary' needs exactly 2 classes; found {len(listing.class_names)}: "
                         f"{listing.class_names}.")
    return ImageInputFn(listing, options, _Augmenter(owner, augment, options))


def load_images(source, image_size=(256, 256), channels=3, on_error="raise", num_parallel_calls=None,
                crop_to_aspect_ratio=False, class_names=None, path_column="path", label_column="label",
                name_column=None, header=True, interpolation="bilinear"):
    """The images of ``source`` as arrays, for the scikit-learn path: ``X, y, class_names = load_images(...)``.

    Parameters are those of :func:`image_input_fn`; the files are decoded in its worker threads, in listing order
    (classes in label order, files sorted within each; a CSV in its row order).

    Returns
    -------
    X : ndarray of shape (n_images, height, width, channels), float32 in [0, 1]
    y : ndarray of shape (n_images,), int64 class indices
    class_names : ndarray of str, shape (n_classes,)
        ``class_names[y]`` gives each image's class name, so that ``CNNClassifier().fit(X, class_names[y])`` has
        ``classes_`` holding the names.

    Examples
    --------
    >>> X, y, class_names = load_images("shapes/", image_size=(32, 32))  # doctest: +SKIP
    >>> CNNClassifier(conv_filters=(8, 16), dense_units=(32,)).fit(X, class_names[y]).classes_  # doctest: +SKIP
    array(['circle', 'square', 'triangle'], dtype='<U8')
    """
    input_fn = image_input_fn(source, image_size=image_size, channels=channels, batch_size=256, num_epochs=1,
                              shuffle=False, augment=None, num_parallel_calls=num_parallel_calls, label_mode="int",
                              crop_to_aspect_ratio=crop_to_aspect_ratio, on_error=on_error, class_names=class_names,
                              path_column=path_column, label_column=label_column, name_column=name_column,
                              header=header, interpolation=interpolation)
    batches = list(input_fn())
    names = numpy.array(input_fn.class_names, dtype=str)
    height, width = input_fn.image_size
    if not batches:  # every file skipped
        return numpy.empty((0, height, width, channels), numpy.float32), numpy.empty(0, numpy.int64), names
    return (numpy.concatenate([images for images, _ in batches]),
            numpy.concatenate([labels for _, labels in batches]), names)


class ImageInputFn:
    """The input_fn :func:`image_input_fn` returns: ``input_fn(mode=None)`` -> :class:`ImageBatches`.

    Attributes
    ----------
    class_names : list of str
        The class of each label (``class_names[label]``).
    file_paths : list of str
        The image files, in listing order.
    labels : ndarray of int64
        The label of each file.
    image_size : (int, int)
    channels : int
    """

    def __init__(self, listing, options, augmenter):
        self.class_names = list(listing.class_names)
        self.file_paths = list(listing.paths)
        self.labels = listing.labels
        self.image_size = options.image_size
        self.channels = options.channels
        self._options = options
        self._augmenter = augmenter

    @property
    def num_classes(self):
        """The number of classes (``len(class_names)``)."""
        return len(self.class_names)

    def __repr__(self):
        return (f"ImageInputFn({len(self.file_paths)} images, {self.num_classes} classes, "
                f"image_size={self.image_size}, channels={self.channels})")

    def __call__(self, mode=None):
        """The batches of one call; ``mode`` (``"train"``, ``"eval"``, ``"infer"``) decides whether ``augment``
        applies: in ``"train"``, or when no mode is given and the input_fn shuffles."""
        if mode is not None and mode not in _MODE_KEYS:
            raise ValueError(f"image_input_fn: received an invalid value for `mode`, expected None, 'train', 'eval' "
                             f"or 'infer' (flowlearn.estimators.ModeKeys). Received: mode={mode!r}")
        options = self._options
        training = mode == _TRAIN or (mode is None and options.shuffle)
        seed = _seed_or_drawn(options.seed, options.shuffle or (training and self._augmenter.active))
        # Two streams, so that augmenting or not never changes the order of the files.
        order_seed, augment_seed = numpy.random.SeedSequence(seed).spawn(2)
        return ImageBatches(self, numpy.random.default_rng(order_seed), numpy.random.default_rng(augment_seed),
                            training)

    # -- the pipeline ----------------------------------------------------------------------------------------
    def _items(self, order_rng, augment_rng, training):
        """``(kind, item)`` pairs: batches, and a warning after each pass that skipped files."""
        options = self._options
        augmenting = training and self._augmenter.active
        executor = ThreadPoolExecutor(options.workers, thread_name_prefix=f"{_THREAD_PREFIX}-decode")
        try:
            for _ in _passes(options.num_epochs):
                n = len(self.file_paths)
                order = order_rng.permutation(n) if options.shuffle else numpy.arange(n)
                skipped = []
                decoded = self._decoded(order, executor)
                # Each batch is made (and augmented) by a worker too, with a generator of its own spawned here
                # in batch order: the draws never depend on which thread runs which batch.
                chunks = ((indices, pixels, augment_rng.spawn(1)[0] if augmenting else None)
                          for indices, pixels in _chunked(self._kept(decoded, skipped), options.batch_size))
                batches = _mapped_in_order(self._prepare, chunks, executor, window=options.workers)
                images_seen = 0
                try:
                    for (indices, _, _), images in batches:
                        images_seen += len(indices)
                        yield BATCH, (images, self._labels(indices))
                finally:
                    batches.close()
                    decoded.close()
                if skipped:
                    path, reason = skipped[0]
                    yield WARNING, (f"image_input_fn skipped {len(skipped)} unreadable image file(s) in one pass "
                                    f"over {n} file(s); the first: {path}: {reason}")
                if images_seen == 0 and options.num_epochs is None:
                    raise ValueError(f"image_input_fn: num_epochs=None, but none of the {n} files could be read; "
                                     "there is nothing to repeat.")
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def _decoded(self, order, executor):
        """``(index, (pixels, reason))`` for each file index of ``order``, in that order, decoded by the workers
        a run of files per task.

        A task per file cost a future, a queue hand-off and a wake-up per image: with two workers the decoding
        took 50% more CPU per image than one thread doing the same work, and no less time. A run of a batch's
        worth of files per task makes those costs a batch's, and keeps ``2 * workers`` runs in flight.
        """
        options = self._options
        size = options.batch_size
        runs = (order[start:start + size] for start in range(0, len(order), size))
        mapped = _mapped_in_order(self._decode_run, runs, executor, window=2 * options.workers)
        try:
            for indices, results in mapped:
                yield from zip(indices.tolist(), results)
        finally:
            mapped.close()

    def _decode_run(self, indices):
        """``[(pixels, None) or (None, reason), ...]`` for the files ``indices``: runs in a worker thread."""
        return [self._decode(index) for index in indices.tolist()]

    def _decode(self, index):
        """``(pixels, None)`` or ``(None, reason)`` for file ``index``."""
        try:
            return _read_image(self.file_paths[index], self._options), None
        except Exception as error:  # noqa: BLE001 - any failure to read or decode is the file's, named with it
            return None, f"{type(error).__name__}: {error}"

    def _prepare(self, chunk):
        """One batch from ``(indices, pixels, rng)``: float32 in [0, 1], augmented in training; runs in a worker."""
        _, pixels, rng = chunk
        return self._augmenter.from_pixels(pixels, rng, training=rng is not None)

    def _kept(self, decoded, skipped):
        """The decoded ``(index, pixels)``; an unreadable file raises, or with on_error="skip" is recorded."""
        for index, (pixels, reason) in decoded:
            if pixels is None:
                path = self.file_paths[index]
                if self._options.on_error == "raise":
                    raise ValueError(f"{path}: cannot read the image ({reason}). Pass on_error='skip' to leave "
                                     "unreadable files out.")
                skipped.append((path, reason))
                continue
            yield index, pixels

    def _labels(self, indices):
        mode = self._options.label_mode
        if mode is None:
            return None
        labels = self.labels[indices]
        if mode == "int":
            return labels
        if mode == "binary":
            return labels.astype(numpy.float32).reshape(-1, 1)
        # One-hot rows written in place: indexing an identity matrix would build num_classes**2 floats per batch.
        one_hot = numpy.zeros((len(labels), self.num_classes), numpy.float32)
        one_hot[numpy.arange(len(labels)), labels] = 1
        return one_hot

    def _cardinality(self):
        options = self._options
        if options.num_epochs is None:
            return INFINITE
        if options.on_error == "skip":
            return UNKNOWN  # skipped files are found only by decoding them
        return options.num_epochs * -(-len(self.file_paths) // options.batch_size)


class ImageBatches:
    """What a call of an :class:`ImageInputFn` returns: an iterable of ``(images, labels)`` batches.

    Each iteration decodes the files again in its own threads and draws new orders (and augmentations) from the
    generators seeded at the call (tf.data's ``reshuffle_each_iteration``), so two calls with the same ``seed``
    give the same batches. ``cardinality()`` is the number of batches (:data:`INFINITE` when ``num_epochs`` is
    None, :data:`UNKNOWN` with ``on_error="skip"``). The threads stop when an iteration ends, fails or is
    abandoned.
    """

    def __init__(self, input_fn, order_rng, augment_rng, training):
        self._input_fn = input_fn
        self._order_rng, self._augment_rng = order_rng, augment_rng
        self.training = training

    def cardinality(self):
        """Batches per iteration, or :data:`~flowlearn.layers.data_adapter.INFINITE` (``num_epochs=None``) or
        :data:`~flowlearn.layers.data_adapter.UNKNOWN` (``on_error="skip"``: skipped files change the count)."""
        return self._input_fn._cardinality()

    def __len__(self):
        size = self.cardinality()
        if size < 0:
            options = self._input_fn._options
            raise TypeError(f"image_input_fn: len() needs a known number of batches, which num_epochs=None or "
                            f"on_error='skip' leaves unknown; got num_epochs={options.num_epochs!r}, "
                            f"on_error={options.on_error!r} (cardinality() is {size}).")
        return size

    def __iter__(self):
        input_fn, prefetch = self._input_fn, self._input_fn._options.prefetch

        def items():
            return input_fn._items(self._order_rng, self._augment_rng, self.training)

        pairs = prefetched(items, prefetch, f"{_THREAD_PREFIX}-prefetch", "image_input_fn") if prefetch else items()
        yield from delivered(pairs)


# -- stages ----------------------------------------------------------------------------------------------------
def _mapped_in_order(function, items, executor, window):
    """``(item, function(item))`` for each item, computed on ``executor`` with at most ``window`` in flight and
    yielded in the order of ``items``."""
    items = iter(items)
    pending = collections.deque((item, executor.submit(function, item)) for item in itertools.islice(items, window))
    try:
        while pending:
            item, future = pending.popleft()
            for following in itertools.islice(items, 1):
                pending.append((following, executor.submit(function, following)))
            yield item, future.result()
    finally:
        for _, future in pending:
            future.cancel()


def _chunked(decoded, batch_size):
    """``(indices, [pixels, ...])`` groups of ``batch_size`` decoded images (the last may be smaller)."""
    while True:
        chunk = list(itertools.islice(decoded, batch_size))
        if not chunk:
            return
        yield numpy.fromiter((index for index, _ in chunk), numpy.int64, len(chunk)), [image for _, image in chunk]


def _pillow(owner):
    """Pillow's Image module, or an ImportError saying how to install it (checked when an input_fn is made,
    so that a missing Pillow is not reported as an unreadable file)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{owner} decodes images with Pillow, which is not installed: pip install "
                          "'flowlearn[images]' (or pip install pillow).") from None
    return Image


def _read_image(path, options):
    """The pixels of the image file at ``path``: uint8 ``(height, width, channels)`` at ``options.image_size``."""
    Image = _pillow("image_input_fn")
    height, width = options.image_size
    with Image.open(path) as image:
        image.load()  # decodes the whole file: a truncated one fails here
        # Pillow's convert to the mode an image already has is a copy: a JPEG photo is RGB already. Everything
        # is read before the file is closed, which frees the decoded image.
        if image.mode != _MODES[options.channels]:
            image = image.convert(_MODES[options.channels])
        box = None
        if options.crop_to_aspect_ratio:
            box = _central_box(image.width, image.height, width / height)
        if box is not None or image.size != (width, height):
            resample = getattr(Image.Resampling, options.interpolation.upper())
            image = image.resize((width, height), resample=resample, box=box)
        pixels = numpy.asarray(image, dtype=numpy.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _central_box(width, height, ratio):
    """The largest central (left, top, right, bottom) window of ``width / height == ratio``."""
    if width / height > ratio:
        crop = height * ratio
        return ((width - crop) / 2, 0, (width + crop) / 2, height)
    crop = width / ratio
    return (0, (height - crop) / 2, width, (height + crop) / 2)


# -- augmentation --------------------------------------------------------------------------------------------------
class _Augmenter:
    """``augment`` (None, a dict or a callable) checked once; called on each batch with the training flag."""

    def __init__(self, owner, augment, options):
        self.active = augment is not None
        self._callable = None
        self._steps = []
        self._central = None
        if augment is None:
            return
        if callable(augment):
            self._callable = augment
            return
        if not isinstance(augment, dict):
            raise ValueError(f"{owner}: received an invalid value for `augment`, expected None, a dict of "
                             f"augmentations or a callable(images, rng) -> images. Received: augment={augment!r}")
        unknown = sorted(str(key) for key in augment if key not in _AUGMENT_KEYS)
        if unknown:
            raise ValueError(f"{owner}: unknown augmentation(s) {unknown} in `augment`; the known ones are "
                             f"{list(_AUGMENT_KEYS)}.")
        if options.channels != 3 and ("hue" in augment or "saturation" in augment):
            raise ValueError(f"{owner}: the 'hue' and 'saturation' augmentations need RGB images (channels=3); "
                             f"received channels={options.channels}.")
        for key in _AUGMENT_KEYS:
            if key in augment:
                step = self._step(owner, key, augment[key], options)
                if step is not None:
                    self._steps.append(step)
        if "saturation" in augment and "hue" in augment:  # adjacent in _AUGMENT_KEYS: one trip through HSV
            self._steps[-2:] = [augmentation._saturation_and_hue(*self._steps[-2:])]
        # Ops check their arguments when they run: run them once now, on a tiny batch, so that a bad value is
        # named when the input_fn is made rather than in a training loop.
        height, width = options.image_size
        probe = numpy.full((1, height, width, options.channels), 0.5, numpy.float32)
        self(probe, numpy.random.default_rng(0), training=True)

    def _step(self, owner, key, value, options):
        """The op for ``augment[key]``: an ``augmentation._PerImage`` (drawn for the whole batch, applied a few
        images at a time), a whole-batch callable ``(images, rng) -> images``, or None for a flip set to False."""
        ops = augmentation
        if key in ("flip_left_right", "flip_up_down"):
            if not isinstance(value, (bool, numpy.bool_)):
                raise ValueError(f"{owner}: augment[{key!r}] must be True or False; received {value!r}.")
            return ops._FLIPS[2 if key == "flip_left_right" else 1] if value else None
        if key in ("contrast", "saturation"):
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"{owner}: augment[{key!r}] must be a (lower, upper) pair of factors; received "
                                 f"{value!r}.")
            name = f"random_{key}"
            lower, upper = ops._range(name, value[0], value[1])
            return ops._contrast(lower, upper) if key == "contrast" else ops._saturation(lower, upper)
        if key == "crop":
            height, width = options.image_size
            size = ops._crop_size(f"{owner}: augment['crop']", value, height, width)
            self._central = size
            return lambda images, rng: ops.random_crop(images, size, seed=rng)
        if key == "rotation":
            return lambda images, rng: ops.random_rotation(images, value, seed=rng)
        if key == "brightness":
            return ops._brightness(ops._number("random_brightness", "max_delta", value))
        return ops._hue(ops._number("random_hue", "max_delta", value, high=0.5))

    def from_pixels(self, pixels, rng, training):
        """The float32 batch in [0, 1] of a list of uint8 images, augmented in training.

        Where the ops from the first on are per-image ones (no crop or rotation), each few images are converted
        and augmented while they are in cache, with no uint8 or float batch-sized temporary; the random values
        are drawn for the whole batch first, in the ops' order, so the result is the same as converting the
        whole batch and then applying the ops one by one.
        """
        batch = numpy.empty((len(pixels),) + pixels[0].shape, numpy.float32)
        leading = []
        if training and self._callable is None:
            leading = list(itertools.takewhile(_per_image, self._steps))
        values = self._draws(leading, rng, len(pixels))
        for start in range(0, len(pixels), augmentation._SUB_BATCH):
            run = slice(start, start + augmentation._SUB_BATCH)
            for i in range(run.start, min(run.stop, len(pixels))):
                numpy.divide(pixels[i], numpy.float32(255), out=batch[i], dtype=numpy.float32)
            augmentation._apply_in_runs(numpy, leading, [[v[run] for v in drawn] for drawn in values], batch[run],
                                       batch[run])
        if not training or self._callable is not None:
            return self(batch, rng, training)
        return self._apply(self._steps[len(leading):], batch, rng)

    @staticmethod
    def _draws(ops, rng, n):
        return [[numpy.asarray(v, numpy.float32) for v in op.draw(rng, n)] for op in ops]

    def _apply(self, steps, images, rng):
        """``steps`` in order on ``images`` (a batch of this pipeline's own, overwritten): runs of per-image ops
        together, a few images at a time."""
        for per_image, run in itertools.groupby(steps, _per_image):
            run = list(run)
            if not per_image:
                for step in run:
                    images = step(images, rng)
                continue
            if not images.flags.writeable or not images.flags.c_contiguous:
                images = numpy.array(images, numpy.float32, order="C")  # a step's view: copied before writing
            augmentation._apply_in_runs(numpy, run, self._draws(run, rng, len(images)), images, images)
        return images

    def __call__(self, images, rng, training):
        if not training:
            # Evaluation sees the images as they are; only a training crop has a deterministic counterpart.
            return images if self._central is None else augmentation.central_crop(images, self._central)
        if self._callable is not None:
            result = numpy.asarray(self._callable(images, rng))
            if result.ndim != 4 or len(result) != len(images):
                raise ValueError(f"image_input_fn: the augment callable must return a batch of {len(images)} "
                                 f"images (n, height, width, channels); it returned shape {result.shape}.")
            return result
        return self._apply(self._steps, images, rng)


def _per_image(step):
    return isinstance(step, augmentation._PerImage)


# -- listing the files ----------------------------------------------------------------------------------------------
class _Listing:
    def __init__(self, paths, labels, class_names):
        self.paths, self.labels, self.class_names = paths, numpy.asarray(labels, numpy.int64), class_names


def _list_files(owner, source, class_names, path_column, label_column, name_column, header):
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        if os.path.isdir(source):
            return _from_directory(owner, source, class_names)
        if os.path.isfile(source):
            return _from_csv(owner, source, class_names, path_column, label_column, name_column, header)
        raise FileNotFoundError(f"{owner}: no such directory or CSV file: {source!r}")
    raise ValueError(f"{owner}: received an invalid value for `source`, expected a directory of class folders or a "
                     f"CSV file (a str or path). Received: source={source!r}")


def _check_class_names(owner, class_names):
    if class_names is None:
        return None
    if isinstance(class_names, str) or not all(isinstance(name, str) for name in class_names):
        raise ValueError(f"{owner}: received an invalid value for `class_names`, expected a list of str. "
                         f"Received: class_names={class_names!r}")
    names = list(class_names)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if not names or duplicates:
        raise ValueError(f"{owner}: `class_names` must list distinct classes; received {names!r}.")
    return names


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _from_directory(owner, directory, class_names):
    folders = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    names = _check_class_names(owner, class_names)
    if names is None:
        names = folders
    else:
        missing = [name for name in names if name not in folders]
        if missing:
            raise ValueError(f"{owner}: class_names {missing} have no folder in {directory!r}; its folders are "
                             f"{folders}.")
    if not names:
        raise ValueError(f"{owner}: {directory!r} has no sub-folders; expected one folder of images per class.")
    paths, labels = [], []
    for label, name in enumerate(names):
        for root, dirs, files in os.walk(os.path.join(directory, name)):
            dirs.sort()  # walk in a fixed order, so the listing is the same on every machine
            found = [os.path.join(root, file) for file in sorted(files) if _is_image(file)]
            paths += found
            labels += [label] * len(found)
    if not paths:
        raise ValueError(f"{owner}: found no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of "
                         f"{directory!r}.")
    return _Listing(paths, labels, names)


def _column(owner, frame, column, argument):
    if isinstance(column, numbers.Integral) and not isinstance(column, bool) and column in range(frame.shape[1]):
        return frame.iloc[:, int(column)]
    if column in frame.columns:
        return frame[column]
    raise ValueError(f"{owner}: `{argument}`={column!r} is not a column of the CSV; its columns are "
                     f"{list(frame.columns)} (or positions 0-{frame.shape[1] - 1}).")


def _from_csv(owner, path, class_names, path_column, label_column, name_column, header):
    import pandas

    try:
        frame = pandas.read_csv(path, dtype=str, keep_default_na=False, header=0 if header else None,
                                skipinitialspace=True)
    except (pandas.errors.ParserError, pandas.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the CSV list of images ({error})") from None
    if frame.empty:
        raise ValueError(f"{path}: the CSV lists no images.")
    first_line = 2 if header else 1
    folder = os.path.dirname(os.path.abspath(path))
    files = _column(owner, frame, path_column, "path_column").str.strip().tolist()
    for row, file in enumerate(files):
        if not file:
            raise ValueError(f"{path}, line {row + first_line}: the path is empty.")
    paths = [os.path.join(folder, file) for file in files]  # an absolute path stays as it is
    texts = _column(owner, frame, label_column, "label_column").str.strip().tolist()
    names = _check_class_names(owner, class_names)
    if all(re.fullmatch(r"\d+", text) for text in texts):
        labels = [int(text) for text in texts]
        if name_column is not None:
            given = _column(owner, frame, name_column, "name_column").str.strip().tolist()
            names = _names_of_codes(owner, path, labels, given, first_line, names)
        elif names is None:
            names = [str(code) for code in range(max(labels) + 1)]
        elif max(labels) >= len(names):
            raise ValueError(f"{owner}: {path} has label {max(labels)}, but class_names lists {len(names)} classes.")
    else:
        for row, text in enumerate(texts):
            if not text:
                raise ValueError(f"{path}, line {row + first_line}: the label is empty.")
        if names is None:
            names = sorted(set(texts))
        unknown = sorted(set(texts) - set(names))
        if unknown:
            raise ValueError(f"{owner}: {path} has labels {unknown} that are not in class_names {names}.")
        position = {name: code for code, name in enumerate(names)}
        labels = [position[text] for text in texts]
    return _Listing(paths, labels, names)


def _names_of_codes(owner, path, labels, given, first_line, class_names):
    """The class name of each integer label, read from a name column that must give one name per label."""
    names = {}
    for row, (code, name) in enumerate(zip(labels, given)):
        if names.setdefault(code, name) != name:
            raise ValueError(f"{path}, line {row + first_line}: label {code} is named {name!r} here but "
                             f"{names[code]!r} above; each label needs one name.")
    listed = [names.get(code, str(code)) for code in range(max(labels) + 1)]
    if class_names is not None and class_names[:len(listed)] != listed:
        raise ValueError(f"{owner}: class_names {class_names} disagree with the names in {path}: {listed}.")
    return class_names if class_names is not None else listed


# -- options --------------------------------------------------------------------------------------------------------
def _default_workers():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Options:
    def __init__(self, owner, image_size, channels, batch_size, num_epochs, shuffle, seed, num_parallel_calls,
                 label_mode, crop_to_aspect_ratio, on_error, interpolation, prefetch_buffer_size):
        if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
            raise ValueError(f"{owner}: received an invalid value for `image_size`, expected (height, width). "
                             f"Received: image_size={image_size!r}")
        self.image_size = tuple(_count(owner, "image_size", side) for side in image_size)
        if channels not in _MODES or isinstance(channels, bool):
            raise ValueError(f"{owner}: received an invalid value for `channels`, expected 1, 3 or 4. "
                             f"Received: channels={channels!r}")
        self.channels = int(channels)
        self.batch_size, self.num_epochs, self.shuffle, self.seed = _check_settings(owner, batch_size, num_epochs,
                                                                                    shuffle, seed)
        self.workers = (_default_workers() if num_parallel_calls is None
                        else _count(owner, "num_parallel_calls", num_parallel_calls))
        if label_mode not in _LABEL_MODES:
            raise ValueError(f"{owner}: received an invalid value for `label_mode`, expected 'int', 'categorical', "
                             f"'binary' or None. Received: label_mode={label_mode!r}")
        self.label_mode = label_mode
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        if on_error not in ("raise", "skip"):
            raise ValueError(f"{owner}: received an invalid value for `on_error`, expected 'raise' or 'skip'. "
                             f"Received: on_error={on_error!r}")
        self.on_error = on_error
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"{owner}: received an invalid value for `interpolation`, expected one of "
                             f"{list(_INTERPOLATIONS)}. Received: interpolation={interpolation!r}")
        self.interpolation = interpolation
        self.prefetch = _count(owner, "prefetch_buffer_size", prefetch_buffer_size, minimum=0)
