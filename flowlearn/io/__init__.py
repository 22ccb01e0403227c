"""Input and output: bundled datasets (and, as they land, input pipelines, checkpoints and export)."""
from . import checkpoint, datasets
from .csv import csv_input_fn
from .inputs import numpy_input_fn, pandas_input_fn
from .tensorboard import SummaryWriter  # imports tensorboardX only when a writer is created

__all__ = ["checkpoint", "datasets", "csv_input_fn", "numpy_input_fn", "pandas_input_fn", "SummaryWriter"]
