"""``python -m flowlearn``: the ``flowlearn`` command (see :mod:`flowlearn.cli`)."""
import sys

from .cli import main

sys.exit(main())
