"""Runnable examples: ``flowlearn demo`` (:mod:`flowlearn.examples.demo`) and ``python -m flowlearn.examples.quickstart``."""
