"""The ``flowlearn`` sub-commands beyond ``demo``, one module each, registered in :data:`flowlearn.cli.COMMANDS`.

Importing this package registers them; :mod:`flowlearn.cli` does so after defining its registry. Each
module imports its heavy dependencies (pandas, the estimators, the server) inside its ``run``, so
``flowlearn --help`` stays fast.
"""
from . import train, evaluate, predict, export, serve  # noqa: F401  (registration, in --help's order)
