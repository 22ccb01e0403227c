"""Input and output: bundled datasets (and, as they land, input pipelines, checkpoints and export)."""
from . import checkpoint, datasets

__all__ = ["checkpoint", "datasets"]
