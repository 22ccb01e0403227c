"""``flowlearn export``: a trained model as a SavedModel version folder (for ``flowlearn serve``) and/or ONNX."""
from ..cli import command, positive_int
from ._common import fail_missing_extra, load_model


def add_arguments(parser):
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="a model folder written by 'flowlearn train' (or its estimator.flest)")
    parser.add_argument("--export-dir", metavar="BASE",
                        help="write a SavedModel into a new numbered version folder under BASE and print its path "
                             "(serve it with 'flowlearn serve --model_base_path BASE')")
    parser.add_argument("--onnx", metavar="PATH", help="write an ONNX file (needs: pip install 'flowlearn[onnx]')")
    parser.add_argument("--opset", type=positive_int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--debug-outputs", action="store_true",
                        help="with --export-dir: add a 'debug' signature (every intermediate value) and, for a CNN, "
                             "a 'feature_maps' signature (the first convolution's activations, which the playground "
                             "of 'flowlearn serve' draws)")


def _export_checked(estimator, base, debug_outputs=False):
    """Export into a new version under ``base``, load it back, and return its path.

    A server polling ``base`` takes the newest version; one that its loader would refuse must not sit
    there, so a version that does not load is removed and the loader's reason is the error.
    """
    import shutil

    from ..io.saved_model import export_saved_model, load_saved_model

    version = export_saved_model(estimator, base, debug_outputs=debug_outputs)
    try:
        load_saved_model(version)
    except ValueError as error:
        shutil.rmtree(version, ignore_errors=True)
        raise ValueError(f"--export-dir: the export does not load back, so it was removed: {error}") from None
    return version


@command("export", "export a trained model as a SavedModel version folder (for flowlearn serve) or ONNX",
         add_arguments)
def run(args):
    if args.export_dir is None and args.onnx is None:
        raise ValueError("expected --export-dir BASE, --onnx PATH or both; got neither")
    if args.opset is not None and args.onnx is None:
        raise ValueError("--opset: applies to --onnx only")
    if args.debug_outputs and args.export_dir is None:
        raise ValueError("--debug-outputs: applies to --export-dir only")
    estimator, _ = load_model(args.model)
    if args.export_dir is not None:
        print(_export_checked(estimator, args.export_dir, args.debug_outputs))
    if args.onnx is not None:
        try:
            from ..io.onnx import export_onnx
        except ImportError as error:
            return fail_missing_extra("export", "onnx", error)
        try:
            print(export_onnx(estimator, args.onnx, opset=args.opset))
        except ImportError as error:  # the exporter imports onnx when it is called
            return fail_missing_extra("export", "onnx", error)
