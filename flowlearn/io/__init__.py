"""Input and output: input_fn pipelines (arrays, DataFrames, CSV, images, TFRecord, Dask), feature columns (``flowlearn.feature_column``), checkpoints, SavedModel export and loading, ONNX, TensorBoard event files, REST serving (``flowlearn.io.serving``) and the bundled MNIST digits."""
from . import augmentation, checkpoint, datasets
from .csv import csv_input_fn
from .datasets import load_mnist, read_idx
from .dask import dask_input_fn  # imports dask only when called
from .augmentation import (central_crop, random_brightness, random_contrast, random_crop, random_flip_left_right,
                           random_flip_up_down, random_hue, random_rotation, random_saturation)
from .images import image_input_fn, load_images  # imports Pillow only when an image is decoded
from .inputs import numpy_input_fn, pandas_input_fn
from .saved_model import (LoadedModel, ServingInputReceiver, build_raw_serving_input_receiver_fn, export_saved_model,
                          load_saved_model)
from .onnx import export_onnx  # imports onnx only when a model is exported
from .tensorboard import SummaryWriter  # imports tensorboardX only when a writer is created
from .tfrecord import (FixedLenFeature, TFRecordWriter, VarLenFeature, read_tfrecord, tfrecord_input_fn,
                       write_tfrecord)  # imports protobuf and crc32c only when a record is read or written

__all__ = ["checkpoint", "datasets", "load_mnist", "read_idx", "csv_input_fn", "numpy_input_fn", "pandas_input_fn", "SummaryWriter",
           "export_onnx", "export_saved_model", "load_saved_model", "LoadedModel", "ServingInputReceiver",
           "build_raw_serving_input_receiver_fn", "augmentation", "image_input_fn", "load_images", "central_crop",
           "random_brightness", "random_contrast", "random_crop", "random_flip_left_right", "random_flip_up_down",
           "random_hue", "random_rotation", "random_saturation"]
__all__ += ["dask_input_fn"]
__all__ += ["FixedLenFeature", "VarLenFeature", "TFRecordWriter", "read_tfrecord", "write_tfrecord",
            "tfrecord_input_fn"]
