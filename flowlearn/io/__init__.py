"""Input and output: bundled datasets (and, as they land, input pipelines, checkpoints and export)."""
from . import datasets

__all__ = ["datasets"]
