"""Runnable examples: ``python -m flowlearn.examples.quickstart``."""
