"""The ``flowlearn`` command: one argparse sub-command per job, each registered in :data:`COMMANDS`.

A command is a function ``run(args) -> int | None`` registered with :func:`command`, which also names the
function that adds its arguments. Mistakes on the command line and user errors inside a command end in
one line on stderr and a non-zero exit status, never a traceback:

- a bad command line (unknown command, bad value): ``flowlearn: error: ...``, status 2;
- ``ValueError`` / ``TypeError`` raised by a command (bad input): ``flowlearn <cmd>: error: ...``, status 2;
- ``OSError`` such as ``FileNotFoundError``: ``flowlearn <cmd>: error: ...``, status 1;
- Ctrl-C: status 130, nothing printed.

Any other exception is a bug in flowlearn and keeps its traceback.
"""
import argparse
import sys
from dataclasses import dataclass
from typing import Callable

from . import __version__

#: name -> :class:`Command`, in the order ``flowlearn --help`` lists them.
COMMANDS = {}


@dataclass(frozen=True)
class Command:
    """A sub-command: its name, one-line help, ``add_arguments(parser)`` and ``run(args)`` (returns the status)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], "int | None"]


def command(name, help, add_arguments=None):
    """Register the decorated ``run(args)`` as ``flowlearn <name>``; ``add_arguments(parser)`` adds its options."""
    def register(run):
        if name in COMMANDS:
            raise ValueError(f"command: a command named {name!r} is already registered.")
        COMMANDS[name] = Command(name, help, add_arguments or (lambda parser: None), run)
        return run
    return register


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage before its error; one line that says what is wrong and where to
    # look is easier to read, and it is what scripts that wrap the command get on stderr.
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _integer(text, minimum=1, expected="a positive integer")


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    return _integer(text, minimum=0, expected="a non-negative integer")


def _integer(text, minimum, expected):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def build_parser():
    """The ``flowlearn`` parser with one sub-parser per registered command."""
    parser = _Parser(prog="flowlearn", description="flowlearn: deep learning with scikit-learn estimators and "
                                                   "Keras-style layers on a numpy/cupy autodiff core.")
    parser.add_argument("--version", action="version", version=f"flowlearn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    for entry in COMMANDS.values():
        sub = subparsers.add_parser(entry.name, help=entry.help, description=entry.help)
        entry.add_arguments(sub)
        sub.set_defaults(_run=entry.run, _parser=sub)
    return parser


def main(argv=None):
    """Run ``flowlearn`` with ``argv`` (``sys.argv[1:]`` when None); returns the exit status."""
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # blamed on the command they were given to, whose --help lists what it takes
            args._parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as done:  # --help, --version and command-line errors: argparse has printed them
        return 0 if done.code is None else done.code if isinstance(done.code, int) else 1
    try:
        return args._run(args) or 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError) as error:
        return _fail(args.command, error, status=2)
    except OSError as error:  # FileNotFoundError, PermissionError, ...
        return _fail(args.command, error, status=1)


def _fail(name, error, status):
    message = " ".join(str(error).split()) or type(error).__name__  # one line, whatever the exception held
    print(f"flowlearn {name}: error: {message}", file=sys.stderr)
    return status


# --- commands ----------------------------------------------------------------------------------------------

def _demo_arguments(parser):
    from .examples import demo

    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"passes over the training digits (default: {demo.EPOCHS}, 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"train on {demo.QUICK_TRAIN_DIGITS:,} digits for one epoch: a run of seconds")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seeds weights, dropout and shuffling (default: 0)")
    parser.add_argument("--batch-size", type=positive_int, default=demo.BATCH_SIZE,
                        help=f"digits per training step (default: {demo.BATCH_SIZE})")
    parser.add_argument("--export-dir", metavar="BASE",
                        help="export the trained CNN as a SavedModel version under BASE (default: a temporary folder, "
                             "removed at the end; with --serve the cache folder "
                             "$XDG_CACHE_HOME/flowlearn/demo-mnist); the demo reloads it and predicts test digits "
                             "with it")
    parser.add_argument("--serve", action="store_true",
                        help="then serve the export with the playground of 'flowlearn serve' (draw a digit, see the "
                             "prediction) and print its URL; an export already under BASE is served without "
                             "training again")
    # No argparse defaults: a --port or --host given without --serve is refused, even one that names the default.
    parser.add_argument("--port", type=_port, help="with --serve: the port (default: 8501)")
    parser.add_argument("--host", help="with --serve: the address (default: 127.0.0.1)")


def _port(text):
    from .commands._common import port_number

    return port_number(text)


@command("demo", "train the worked examples' CNN on the bundled MNIST digits, print its test accuracy, export "
                 "it, reload it and predict a few digits",
         _demo_arguments)
def _demo(args):
    from .examples import demo

    given = [f"--{name} {getattr(args, name)}" for name in ("port", "host") if getattr(args, name) is not None]
    if given and not args.serve:
        raise ValueError(f"{' and '.join(given)}: apply to --serve only, and --serve was not given")
    if args.serve:
        import importlib

        from .commands._common import fail_missing_extra
        from .commands.serve import _check_port_free

        try:
            importlib.import_module("flowlearn.io.serving")
        except ImportError as error:
            return fail_missing_extra("demo", "serve", error)
        host = "127.0.0.1" if args.host is None else args.host
        port = 8501 if args.port is None else args.port
        _check_port_free(host, port)
        demo.serve_playground(export_dir=args.export_dir, host=host, port=port, epochs=args.epochs,
                              quick=args.quick, seed=args.seed, batch_size=args.batch_size)
        return None
    demo.run(epochs=args.epochs, quick=args.quick, seed=args.seed, batch_size=args.batch_size,
             export_dir=args.export_dir)


# train, evaluate, predict, export, serve: one module each, registering themselves through `command` above
# (imported last, once the registry and the argument types they use exist).
from . import commands  # noqa: E402,F401
