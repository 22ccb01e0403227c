"""``flowlearn serve``: TF Serving's REST API for the SavedModels under a folder (the ``serve`` extra).

TF Serving's own spellings of the options (``--model_base_path``, ``--model_name``, ``--rest_api_port``,
``--file_system_poll_wait_seconds``) are accepted beside the dashed ones, so its command lines carry over.
"""
import importlib
import os
import socket

from ..cli import command, positive_int
from ._common import fail_missing_extra, non_negative_float, port_number, positive_float


def add_arguments(parser):
    parser.add_argument("--model-base-path", "--model_base_path", dest="model_base_path", required=True, metavar="DIR",
                        help="folder of numbered SavedModel versions (as 'flowlearn export --export-dir' writes); "
                             "the newest is served and new ones are picked up without restart")
    parser.add_argument("--model-name", "--model_name", dest="model_name", required=True, metavar="NAME",
                        help="the NAME in the URLs /v1/models/NAME[:predict]")
    parser.add_argument("--port", "--rest-api-port", "--rest_api_port", dest="port", type=port_number, default=8501,
                        help="TCP port of the REST API (default: 8501, as TF Serving)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for every "
                             "interface)")
    parser.add_argument("--max-batch-size", type=positive_int,
                        help="most instances of concurrent requests run in one forward pass")
    parser.add_argument("--batch-timeout-ms", type=non_negative_float,
                        help="longest a request waits for others to share its forward pass, in milliseconds "
                             "(default 0: requests arriving while a pass runs still share the next one)")
    parser.add_argument("--max-body-bytes", type=positive_int,
                        help="largest request body accepted; bigger ones get 413")
    parser.add_argument("--poll-interval-s", "--file_system_poll_wait_seconds", dest="poll_interval_s",
                        type=positive_float, help="seconds between looks for new versions")
    parser.add_argument("--no-ui", action="store_true",
                        help="do not serve the model playground (GET / and /ui/NAME: a page that draws the model's "
                             "input and shows its predictions); the REST API only")


def playground_url(host, port, model_name):
    """The URL of the model's playground page (an unspecified address is reached on loopback)."""
    from urllib.parse import quote

    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/ui/{quote(model_name, safe='')}"


def _check_port_free(host, port):
    """Fail with one line before the server starts when the address cannot be bound (the server's own failure is a
    log record and an exit from inside its event loop)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ValueError(f"--host: cannot resolve {host!r}: {error.strerror}") from None
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as error:
            raise OSError(f"--port: cannot listen on {host}:{port}: {error.strerror or error}") from None


@command("serve", "serve the SavedModels under a folder over TF Serving's REST API (needs the serve extra)",
         add_arguments)
def run(args):
    if not os.path.isdir(args.model_base_path):
        raise FileNotFoundError(f"--model_base_path: no such folder: {args.model_base_path!r}")
    options = {name: getattr(args, name) for name in ("max_batch_size", "batch_timeout_ms", "max_body_bytes",
                                                       "poll_interval_s") if getattr(args, name) is not None}
    try:
        # import_module reads sys.modules, as a plain `from ..io import serving` (which may find the attribute
        # a first import left on flowlearn.io) does not.
        serving = importlib.import_module("flowlearn.io.serving")
    except ImportError as error:
        return fail_missing_extra("serve", "serve", error)
    _check_port_free(args.host, args.port)
    print(f"flowlearn serve: model {args.model_name!r} from {args.model_base_path} at "
          f"http://{args.host}:{args.port}/v1/models/{args.model_name}", flush=True)
    if args.no_ui:
        options["ui"] = False
    else:
        print(f"playground: {playground_url(args.host, args.port, args.model_name)}", flush=True)
    try:
        serving.serve(args.model_base_path, args.model_name, host=args.host, port=args.port, **options)
    except ImportError as error:  # a server module imported when serving starts
        return fail_missing_extra("serve", "serve", error)
