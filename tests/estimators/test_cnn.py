"""CNNClassifier: images in NHWC or as flat rows, and the MNIST worked example."""
import numpy
import pytest
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from flowlearn.estimators import CNNClassifier


@pytest.fixture(scope="module")
def digit_images():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).reshape(-1, 8, 8, 1)[:500], y[:500]


def small_cnn(**params):
    defaults = dict(conv_filters=(8,), kernel_size=3, dense_units=(32,), batch_size=50, learning_rate=0.003, epochs=10,
                    random_state=0)
    return CNNClassifier(**{**defaults, **params})


def test_images_and_flat_rows_give_the_same_model(digit_images):
    images, y = digit_images
    from_images = small_cnn().fit(images, y)
    from_rows = small_cnn(image_shape=(8, 8, 1)).fit(images.reshape(len(images), -1), y)
    assert from_images.n_features_in_ == from_rows.n_features_in_ == 64
    numpy.testing.assert_array_equal(from_images.predict_proba(images), from_rows.predict_proba(images))
    # Either form is accepted at prediction, whatever the fit saw.
    numpy.testing.assert_array_equal(from_images.predict_proba(images.reshape(len(images), -1)),
                                     from_images.predict_proba(images))
    assert from_images.score(images, y) > 0.9


def test_works_after_a_scikit_learn_transformer(digit_images):
    images, y = digit_images
    pipeline = make_pipeline(MinMaxScaler(), small_cnn(image_shape=(8, 8, 1))).fit(images.reshape(len(images), -1), y)
    assert pipeline.score(images.reshape(len(images), -1), y) > 0.9


def test_channels_last_grayscale_without_a_channel_axis(digit_images):
    images, y = digit_images
    model = small_cnn(epochs=2).fit(images[..., 0], y)
    assert model._image_shape == (8, 8, 1)
    numpy.testing.assert_array_equal(model.predict(images[..., 0]), model.predict(images))


@pytest.mark.parametrize("n_features, shape", [(64, (8, 8, 1)), (10, (1, 10, 1)), (1, (1, 1, 1))])
def test_flat_rows_without_image_shape(n_features, shape):
    rng = numpy.random.default_rng(0)
    model = CNNClassifier(conv_filters=(2,), dense_units=(4,), epochs=1).fit(rng.random((20, n_features)),
                                                                               numpy.arange(20) % 2)
    assert model._image_shape == shape


def test_image_shape_errors(digit_images):
    images, y = digit_images
    expected = r"'image_shape' parameter of CNNClassifier must be \(height, width, channels\) holding the 64 features"
    with pytest.raises(ValueError, match=expected):
        small_cnn(image_shape=(8, 7, 1)).fit(images.reshape(len(images), -1), y)
    model = small_cnn(epochs=1).fit(images, y)
    with pytest.raises(ValueError, match=r"X holds images of shape \(4, 16, 1\) .* on images of shape \(8, 8, 1\)"):
        model.predict(images.reshape(-1, 4, 16, 1))


# The MNIST accuracy of CNNClassifier's defaults (>= 0.975 after six epochs) is asserted by the
# docs/estimators.md example that trains exactly that model (tests/estimators/test_docs.py).
