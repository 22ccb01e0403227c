"""image_input_fn and load_images over a small folder of drawn shapes (PNG and JPEG), made on the fly."""
import gc
import os
import shutil
import threading
import time
import warnings

import numpy
import pytest

Image = pytest.importorskip("PIL.Image")
ImageDraw = pytest.importorskip("PIL.ImageDraw")

import flowlearn as fl  # noqa: E402
from flowlearn.io import image_input_fn, load_images  # noqa: E402
from flowlearn.layers.data_adapter import INFINITE, UNKNOWN, iterate_batches  # noqa: E402

CLASSES = ("circle", "square", "triangle")
PER_CLASS = 40


def _image_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("flowlearn-images")]


@pytest.fixture(autouse=True)
def _no_thread_left():
    yield
    if _image_threads():  # an abandoned iteration stops its threads when it is collected
        gc.collect()
    assert not _image_threads(), "an image_input_fn thread outlived its test"


def _draw(kind, rng, size=32):
    """One bright shape at a random place, size and colour on a dark background of random colour."""
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 90, 3)))
    draw = ImageDraw.Draw(image)
    colour = tuple(int(v) for v in rng.integers(150, 256, 3))
    r = rng.uniform(0.25, 0.4) * size
    cx, cy = rng.uniform(r, size - r, 2)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return image


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """``shapes/<class>/<nnn>.png|jpg``: 40 images of 32x32 per class, PNG and JPEG alternating."""
    root = tmp_path_factory.mktemp("shapes")
    rng = numpy.random.default_rng(1)
    for kind in CLASSES:
        (root / kind).mkdir()
        for i in range(PER_CLASS):
            _draw(kind, rng).save(root / kind / f"{i:03d}.{'png' if i % 2 == 0 else 'jpg'}")
    (root / "circle" / "notes.txt").write_text("not an image: ignored by the listing")
    return root


@pytest.fixture
def with_corrupt(shapes, tmp_path):
    """A copy of the shapes with one corrupt JPEG (a JPEG's first bytes and then nothing) among the squares."""
    root = tmp_path / "shapes"
    shutil.copytree(shapes, root)
    good = (root / "square" / "001.jpg").read_bytes()
    (root / "square" / "001b.jpg").write_bytes(good[:200])
    return root, root / "square" / "001b.jpg"


def _all(input_fn, mode=None):
    batches = list(input_fn() if mode is None else input_fn(mode=mode))
    return numpy.concatenate([x for x, _ in batches]), numpy.concatenate([y for _, y in batches]), batches


# -- listing and decoding --------------------------------------------------------------------------------------
def test_class_folders_give_sorted_names_and_labels(shapes):
    input_fn = image_input_fn(shapes, image_size=(32, 32), shuffle=False)
    assert input_fn.class_names == list(CLASSES)
    assert len(input_fn.file_paths) == 3 * PER_CLASS  # notes.txt left out
    for path, label in zip(input_fn.file_paths, input_fn.labels):
        assert f"/{CLASSES[label]}/" in path
    only = image_input_fn(shapes, image_size=(32, 32), class_names=["triangle", "circle"], shuffle=False)
    assert only.class_names == ["triangle", "circle"] and len(only.file_paths) == 2 * PER_CLASS
    assert all("/triangle/" in path for path in only.file_paths[:PER_CLASS])


def test_pixels_match_pillow(shapes):
    input_fn = image_input_fn(shapes, image_size=(32, 32), batch_size=7, shuffle=False, num_parallel_calls=3)
    images, labels, batches = _all(input_fn)
    assert [len(y) for _, y in batches] == [7] * 17 + [1]
    assert images.dtype == numpy.float32 and images.shape == (120, 32, 32, 3) and labels.dtype == numpy.int64
    for index in (0, 1, 50, 119):  # PNG and JPEG, several classes
        with Image.open(input_fn.file_paths[index]) as image:
            expected = numpy.asarray(image.convert("RGB"), numpy.float32) / 255
        numpy.testing.assert_allclose(images[index], expected, atol=1e-7)
    assert labels.tolist() == input_fn.labels.tolist()


@pytest.mark.parametrize("suffix", ["bmp", "gif", "JPEG", "png"])
def test_each_format_decodes_as_pillow_reads_it(tmp_path, suffix):
    (tmp_path / "one" / "a").mkdir(parents=True)
    path = tmp_path / "one" / "a" / f"picture.{suffix}"
    _draw("triangle", numpy.random.default_rng(3), size=20).save(path, format="JPEG" if suffix == "JPEG" else None)
    images, _ = next(iter(image_input_fn(tmp_path / "one", image_size=(20, 20), shuffle=False)()))
    with Image.open(path) as image:
        numpy.testing.assert_allclose(images[0], numpy.asarray(image.convert("RGB"), numpy.float32) / 255, atol=1e-7)


def test_resize_channels_and_crop_to_aspect_ratio(shapes, tmp_path):
    small = image_input_fn(shapes, image_size=(16, 12), channels=1, shuffle=False, interpolation="bilinear")
    images, _, _ = _all(small)
    assert images.shape == (120, 16, 12, 1)
    with Image.open(small.file_paths[3]) as image:
        expected = numpy.asarray(image.convert("L").resize((12, 16), Image.Resampling.BILINEAR)) / 255
    numpy.testing.assert_allclose(images[3, :, :, 0], expected, atol=1e-6)
    # A wide picture of three bands: cropping to a square keeps only the middle band, stretching keeps all three.
    (tmp_path / "bands" / "a").mkdir(parents=True)
    bands = numpy.zeros((20, 60, 3), numpy.uint8)
    bands[:, :20, 0], bands[:, 20:40, 1], bands[:, 40:, 2] = 255, 255, 255
    Image.fromarray(bands).save(tmp_path / "bands" / "a" / "wide.png")
    cropped = next(iter(image_input_fn(tmp_path / "bands", image_size=(10, 10), crop_to_aspect_ratio=True,
                                       interpolation="nearest", shuffle=False)()))[0][0]
    stretched = next(iter(image_input_fn(tmp_path / "bands", image_size=(10, 10), shuffle=False)()))[0][0]
    assert numpy.allclose(cropped[..., 1], 1) and numpy.allclose(cropped[..., [0, 2]], 0)
    assert stretched[:, 0, 0].min() == 1 and stretched[:, -1, 2].min() == 1
    rgba = next(iter(image_input_fn(tmp_path / "bands", image_size=(10, 10), channels=4, shuffle=False)()))[0]
    assert rgba.shape == (1, 10, 10, 4) and numpy.allclose(rgba[..., 3], 1)


def test_csv_lists_paths_names_and_labels(shapes, tmp_path):
    folder = image_input_fn(shapes, image_size=(32, 32), shuffle=False)
    # The face examples' "path,name,label" lines, paths relative to the CSV's folder, in an order of our own.
    rows = [(path, CLASSES[label], label) for path, label in zip(folder.file_paths, folder.labels)][::-1]
    listing = tmp_path / "lists" / "list.csv"
    listing.parent.mkdir()
    listing.write_text("path,name,label\n" + "".join(f"{os.path.relpath(p, listing.parent)},{n},{y}\n"
                                                      for p, n, y in rows))
    by_csv = image_input_fn(listing, image_size=(32, 32), shuffle=False, name_column="name")
    assert by_csv.class_names == list(CLASSES)
    images, labels, _ = _all(by_csv)
    reference, reference_labels, _ = _all(folder)
    numpy.testing.assert_array_equal(images, reference[::-1])
    numpy.testing.assert_array_equal(labels, reference_labels[::-1])
    # Without name_column the integer labels stand for themselves; text labels are named and sorted.
    assert image_input_fn(listing, image_size=(8, 8)).class_names == ["0", "1", "2"]
    text = image_input_fn(listing, image_size=(8, 8), label_column="name", shuffle=False)
    assert text.class_names == list(CLASSES) and text.labels.tolist() == [y for _, _, y in rows]
    headerless = tmp_path / "plain.csv"
    headerless.write_text("".join(f"{p},{n},{y}\n" for p, n, y in rows[:5]))  # absolute paths
    plain = image_input_fn(headerless, image_size=(32, 32), header=False, path_column=0, label_column=1,
                           class_names=list(CLASSES), shuffle=False)
    numpy.testing.assert_array_equal(_all(plain)[0], reference[::-1][:5])
    with pytest.raises(ValueError, match=r"`label_column`='class' is not a column of the CSV; its columns are "
                                         r"\['path', 'name', 'label'\]"):
        image_input_fn(listing, label_column="class")


# -- errors ------------------------------------------------------------------------------------------------------
def test_corrupt_file_raises_naming_its_path(with_corrupt):
    root, corrupt = with_corrupt
    input_fn = image_input_fn(root, image_size=(16, 16), batch_size=8, shuffle=False)
    with pytest.raises(ValueError, match=rf"{corrupt}: cannot read the image \(OSError: .*on_error='skip'"):
        list(input_fn())
    with pytest.raises(ValueError, match=str(corrupt)):
        load_images(root, image_size=(16, 16))


def test_corrupt_file_skipped_and_counted(with_corrupt):
    root, corrupt = with_corrupt
    input_fn = image_input_fn(root, image_size=(16, 16), batch_size=8, num_epochs=2, shuffle=True, seed=0,
                              on_error="skip")
    assert input_fn().cardinality() == UNKNOWN
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(input_fn())
    sizes = [len(y) for _, y in batches]
    assert sizes == ([8] * 15) * 2  # 121 files, 120 readable: the batches stay full
    messages = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(messages) == 2 and all(f"skipped 1 unreadable image file(s) in one pass over 121 file(s); the "
                                      f"first: {corrupt}" in m for m in messages)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        X, y, names = load_images(root, image_size=(16, 16), on_error="skip")
    assert X.shape == (120, 16, 16, 3) and numpy.bincount(y).tolist() == [PER_CLASS] * 3


@pytest.mark.parametrize("arguments, message", [
    (dict(image_size=(0, 8)), r"`image_size`, expected a positive integer. Received: image_size=0"),
    (dict(channels=2), r"`channels`, expected 1, 3 or 4. Received: channels=2"),
    (dict(on_error="ignore"), r"`on_error`, expected 'raise' or 'skip'. Received: on_error='ignore'"),
    (dict(label_mode="sparse"), r"`label_mode`, expected 'int', 'categorical', 'binary' or None"),
    (dict(label_mode="binary"), r"label_mode='binary' needs exactly 2 classes; found 3"),
    (dict(augment={"flip": True}), r"unknown augmentation\(s\) \['flip'\] in `augment`; the known ones are "
                                   r"\['crop', 'rotation', 'flip_left_right', 'flip_up_down', 'brightness', "
                                   r"'contrast', 'saturation', 'hue'\]"),
    (dict(augment={"contrast": 0.5}), r"augment\['contrast'\] must be a \(lower, upper\) pair"),
    (dict(augment={"hue": 0.7}), r"random_hue: .*`max_delta`, expected a number in \[0.0, 0.5\]"),
    (dict(augment={"crop": (40, 40)}, image_size=(32, 32)), r"the crop \(40, 40\) is larger than the images"),
    (dict(augment={"hue": 0.1}, channels=1), r"'hue' and 'saturation' augmentations need RGB images"),
    (dict(augment=[1]), r"expected None, a dict of augmentations or a callable"),
    (dict(class_names=["circle", "hexagon"]), r"class_names \['hexagon'\] have no folder"),
    (dict(num_epochs=0), r"`num_epochs`, expected a positive integer, or None to repeat forever. Received: "
                         r"num_epochs=0"),
    (dict(seed=-1), r"`seed`, expected a non-negative integer or None. Received: seed=-1"),
    (dict(shuffle="yes"), r"`shuffle`, expected True or False. Received: shuffle='yes'"),
    (dict(prefetch_buffer_size=-1), r"`prefetch_buffer_size`, expected a non-negative integer. Received: "
                                    r"prefetch_buffer_size=-1"),
])
def test_bad_arguments_are_named(shapes, arguments, message):
    with pytest.raises(ValueError, match=message):
        image_input_fn(shapes, **arguments)


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory or CSV file"):
        image_input_fn(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no sub-folders"):
        image_input_fn(tmp_path / "empty")


# -- labels, epochs, seeds -------------------------------------------------------------------------------------------
def test_label_modes(shapes):
    base = dict(image_size=(8, 8), shuffle=False, batch_size=200)
    labels = next(iter(image_input_fn(shapes, **base)()))[1]
    onehot = next(iter(image_input_fn(shapes, label_mode="categorical", **base)()))[1]
    assert onehot.dtype == numpy.float32 and onehot.shape == (120, 3)
    numpy.testing.assert_array_equal(onehot.argmax(axis=1), labels)
    assert onehot.sum(axis=1).tolist() == [1.0] * 120
    binary = next(iter(image_input_fn(shapes, label_mode="binary", class_names=["circle", "square"], **base)()))[1]
    assert binary.shape == (80, 1) and binary.ravel().tolist() == [0.0] * 40 + [1.0] * 40
    assert next(iter(image_input_fn(shapes, label_mode=None, **base)()))[1] is None


def test_epochs_cardinality_and_reshuffling(shapes):
    input_fn = image_input_fn(shapes, image_size=(8, 8), batch_size=50, num_epochs=2, seed=3)
    batches = input_fn()
    assert batches.cardinality() == 6 and len(batches) == 6
    first = numpy.concatenate([y for _, y in batches])
    assert len(first) == 240 and numpy.bincount(first[:120]).tolist() == [PER_CLASS] * 3  # every image once a pass
    again = numpy.concatenate([y for _, y in batches])
    assert not numpy.array_equal(first, again)  # iterating again reshuffles (reshuffle_each_iteration)
    forever = image_input_fn(shapes, image_size=(8, 8), num_epochs=None)
    assert forever().cardinality() == INFINITE
    with pytest.raises(TypeError, match=r"^image_input_fn: len\(\) needs a known number of batches.*got "
                                        r"num_epochs=None, on_error='raise' \(cardinality\(\) is -1\)\.$"):
        len(forever())


def test_same_seed_same_batches_whatever_the_threads(shapes):
    augment = {"flip_left_right": True, "brightness": 0.2, "hue": 0.05, "rotation": 10}

    def run(threads, seed, prefetch=2):
        input_fn = image_input_fn(shapes, image_size=(16, 16), batch_size=16, seed=seed, augment=augment,
                                  num_parallel_calls=threads, prefetch_buffer_size=prefetch)
        return _all(input_fn)

    one, labels_one, _ = run(1, 7, prefetch=0)
    four, labels_four, _ = run(4, 7)
    numpy.testing.assert_array_equal(one, four)
    numpy.testing.assert_array_equal(labels_one, labels_four)
    other, labels_other, _ = run(4, 8)
    assert not numpy.array_equal(labels_one, labels_other)


def test_unseeded_calls_follow_set_random_seed(shapes):
    def labels():
        fl.layers.set_random_seed(5)
        return _all(image_input_fn(shapes, image_size=(8, 8)))[1]

    assert numpy.array_equal(labels(), labels())


# -- augmentation only in training -----------------------------------------------------------------------------
def test_augmentation_changes_training_batches_never_evaluation_batches(shapes):
    common = dict(image_size=(16, 16), batch_size=20, seed=0)
    augment = {"flip_left_right": True, "brightness": 0.2, "contrast": (0.8, 1.2), "hue": 0.05,
               "saturation": (0.8, 1.2)}
    plain, plain_labels, _ = _all(image_input_fn(shapes, **common))
    augmented = image_input_fn(shapes, augment=augment, **common)
    trained, trained_labels, _ = _all(augmented)  # no mode and shuffle=True: a training input_fn
    numpy.testing.assert_array_equal(trained_labels, plain_labels)  # augmenting never changes the order
    changed = numpy.abs(trained - plain).reshape(len(plain), -1).max(axis=1) > 1e-3
    assert changed.mean() > 0.9
    assert trained.min() >= 0 and trained.max() <= 1
    numpy.testing.assert_array_equal(_all(augmented, mode="train")[0], trained)
    for mode in ("eval", "infer"):  # what Estimator.evaluate and predict pass
        numpy.testing.assert_array_equal(_all(augmented, mode=mode)[0], plain)
    with pytest.raises(ValueError, match=r"`mode`, expected None, 'train', 'eval' or 'infer'.*mode='training'"):
        augmented(mode="training")
    unshuffled = dict(common, shuffle=False)
    numpy.testing.assert_array_equal(_all(image_input_fn(shapes, augment=augment, **unshuffled))[0],
                                     _all(image_input_fn(shapes, **unshuffled))[0])


@pytest.mark.parametrize("augment", [
    {"flip_left_right": True, "brightness": 0.2, "contrast": (0.8, 1.2), "saturation": (0.8, 1.2), "hue": 0.05},
    {"crop": (12, 10), "flip_up_down": True, "hue": 0.3, "brightness": 0.1, "flip_left_right": False},
    {"rotation": 15, "contrast": (0.5, 1.5), "saturation": (0.2, 1.9), "flip_left_right": True}])
def test_augmented_batches_equal_the_ops_on_whole_batches_bit_for_bit(shapes, augment):
    """The pipeline converts and augments a few images at a time; the batches are those of converting whole
    batches and applying the public ops one by one, in the documented order, with the same generator: bit for
    bit, except that saturation followed by hue runs as one trip through HSV, which skips the roundings of the
    conversion between them (equal to float32 rounding, a few units in the last place of values in [0, 1])."""
    from flowlearn.io import augmentation as aug
    arguments = {"crop": lambda v: (v,), "rotation": lambda v: (v,), "brightness": lambda v: (v,),
                 "hue": lambda v: (v,), "contrast": tuple, "saturation": tuple}
    order = ("crop", "rotation", "flip_left_right", "flip_up_down", "brightness", "contrast", "saturation", "hue")

    def whole(images, rng):
        for key in order:
            if augment.get(key, False) is not False:
                images = getattr(aug, f"random_{key}")(images, *arguments.get(key, lambda v: ())(augment[key]),
                                                       seed=rng)
        return images

    common = dict(image_size=(16, 14), batch_size=23, seed=5)  # 120 images: a short last batch and run
    expected = _all(image_input_fn(shapes, augment=whole, **common), mode="train")[0]
    got = _all(image_input_fn(shapes, augment=augment, **common), mode="train")[0]
    assert got.dtype == numpy.float32 and got.shape == expected.shape
    if "saturation" in augment and "hue" in augment:
        numpy.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        assert numpy.mean(got == expected) > 0.5  # the same draws: most pixels come out bit for bit
    else:
        numpy.testing.assert_array_equal(got, expected)
    assert not numpy.array_equal(got, _all(image_input_fn(shapes, **common), mode="train")[0][:, :got.shape[1],
                                                                                             :got.shape[2]])


def test_crop_is_random_in_training_and_central_otherwise(shapes):
    input_fn = image_input_fn(shapes, image_size=(32, 32), batch_size=40, seed=0, augment={"crop": (24, 24)},
                              shuffle=False)
    full = _all(image_input_fn(shapes, image_size=(32, 32), shuffle=False))[0]
    central = _all(input_fn)[0]
    numpy.testing.assert_array_equal(central, full[:, 4:28, 4:28])
    trained = _all(input_fn, mode="train")[0]
    assert trained.shape == (120, 24, 24, 3) and not numpy.array_equal(trained, central)


def test_callable_augment_gets_each_training_batch_and_a_generator(shapes):
    seen = []

    def invert(images, rng):
        seen.append((images.shape, type(rng).__name__))
        return 1 - images

    input_fn = image_input_fn(shapes, image_size=(8, 8), batch_size=60, seed=0, augment=invert)
    plain = _all(image_input_fn(shapes, image_size=(8, 8), batch_size=60, seed=0))[0]
    numpy.testing.assert_allclose(_all(input_fn)[0], 1 - plain)
    assert seen == [((60, 8, 8, 3), "Generator")] * 2
    _all(input_fn, mode="eval")
    assert len(seen) == 2
    bad = image_input_fn(shapes, image_size=(8, 8), augment=lambda images, rng: images[0])
    with pytest.raises(ValueError, match=r"augment callable must return a batch of 32 images"):
        list(bad())


def test_threads_stop_when_an_iteration_is_abandoned(shapes):
    input_fn = image_input_fn(shapes, image_size=(8, 8), batch_size=4, num_epochs=None, num_parallel_calls=2)
    iterator = iter(input_fn())
    next(iterator)
    assert _image_threads()
    iterator.close()
    assert not _image_threads()


def test_the_data_adapter_takes_it(shapes):
    input_fn = image_input_fn(shapes, image_size=(8, 8), batch_size=50, shuffle=False)
    sizes = [len(labels) for _, labels in iterate_batches(input_fn)]
    assert sizes == [50, 50, 20]


# -- training to well above chance --------------------------------------------------------------------------------
def _split(X, y):
    held_out = numpy.arange(len(y)) % 4 == 0
    return (X[~held_out], y[~held_out]), (X[held_out], y[held_out])


@pytest.mark.slow  # 2-9 s on a shared two-core machine
def test_cnn_classifier_from_load_images_has_the_class_names(shapes):
    from flowlearn.estimators import CNNClassifier

    X, y, class_names = load_images(shapes, image_size=(16, 16))
    assert X.shape == (120, 16, 16, 3) and class_names.tolist() == list(CLASSES)
    (X_train, y_train), (X_test, y_test) = _split(X, y)
    model = CNNClassifier(conv_filters=(8, 16), dense_units=(32,), dropout=0.0, epochs=20, batch_size=16,
                          learning_rate=0.003, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: few epochs on purpose
        model.fit(X_train, class_names[y_train])
    assert model.classes_.tolist() == list(CLASSES)
    assert set(model.predict(X_test[:5])) <= set(CLASSES)
    assert model.score(X_test, class_names[y_test]) > 0.8  # chance is 1/3


def test_model_fn_estimator_from_image_input_fn(shapes, tmp_path):
    from flowlearn.core import losses
    from flowlearn.estimators import Estimator, EstimatorSpec, ModeKeys, RunConfig

    def model_fn(features, labels, mode):
        x = fl.layers.conv2d(features, 8, 3, padding="same", activation="relu")
        x = fl.layers.max_pooling2d(x, 2, 2)
        x = fl.layers.conv2d(x, 16, 3, padding="same", activation="relu")
        x = fl.layers.max_pooling2d(x, 2, 2)
        logits = fl.layers.dense(fl.layers.flatten(x), 3)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode, predictions={"class": logits.numpy().argmax(axis=1)})
        loss = losses.sparse_softmax_cross_entropy(labels, logits)
        if mode == ModeKeys.EVAL:
            return EstimatorSpec(mode, loss=loss, eval_metric_ops={"accuracy": fl.metrics.accuracy(labels, logits)})
        train_op = fl.train.AdamOptimizer(learning_rate=0.003).minimize(loss, global_step=fl.train.get_global_step())
        return EstimatorSpec(mode, loss=loss, train_op=train_op)

    # Train on three folders of the shapes, evaluate on a fourth made of the held-out files.
    train_root, test_root = tmp_path / "train", tmp_path / "test"
    for kind in CLASSES:
        for root in (train_root, test_root):
            (root / kind).mkdir(parents=True)
        for i, path in enumerate(sorted((shapes / kind).glob("*.*g"))):
            shutil.copy(path, (test_root if i % 4 == 0 else train_root) / kind / path.name)
    calls = []

    def counting(images, rng):
        calls.append(len(images))
        return fl.image.random_brightness(images, 0.05, seed=rng)

    train_fn = image_input_fn(train_root, image_size=(16, 16), batch_size=16, num_epochs=None, seed=0,
                              augment=counting)
    eval_fn = image_input_fn(test_root, image_size=(16, 16), batch_size=30, shuffle=False)
    config = RunConfig(save_summary_steps=None, log_step_count_steps=None, tf_random_seed=0)
    estimator = Estimator(model_fn, model_dir=tmp_path / "model", config=config)
    estimator.train(train_fn, steps=120)
    trained_calls = len(calls)
    assert trained_calls >= 120
    metrics = estimator.evaluate(train_fn, steps=3)  # the training input_fn, called with mode="eval"
    assert len(calls) == trained_calls  # evaluation batches are never augmented
    assert estimator.evaluate(eval_fn)["accuracy"] > 0.8
    assert metrics["global_step"] == 120


def test_the_modes_are_the_estimators_mode_keys():
    # flowlearn.io cannot import the estimators: its copy of the mode names must stay theirs.
    from flowlearn.estimators import ModeKeys
    from flowlearn.io import images

    assert images._MODE_KEYS == ModeKeys.ALL and images._TRAIN == ModeKeys.TRAIN


def test_without_pillow_the_error_says_how_to_install_it(shapes, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL then raises ImportError
    with pytest.raises(ImportError, match=r"decodes images with Pillow.*pip install 'flowlearn\[images\]'"):
        image_input_fn(shapes)


def test_only_a_bounded_number_of_images_is_decoded_ahead(shapes, monkeypatch):
    from flowlearn.io import images as images_module

    decoded = []
    read = images_module._read_image

    def counting(path, options):
        decoded.append(path)
        return read(path, options)

    monkeypatch.setattr(images_module, "_read_image", counting)
    input_fn = image_input_fn(shapes, image_size=(8, 8), batch_size=4, num_parallel_calls=2, prefetch_buffer_size=2)
    iterator = iter(input_fn())
    next(iterator)
    time.sleep(0.3)  # time for the pipeline to fill every buffer it has
    # The batch taken, 2 prefetched, 1 waiting to be put and 2 being made (one per thread): 6 batches of 4, plus
    # a decode window of 2 runs of a batch's files per thread, 40 in all (what it reaches): far from the 120 files.
    assert 4 <= len(decoded) <= 6 * 4 + 2 * 2 * 4
    iterator.close()
