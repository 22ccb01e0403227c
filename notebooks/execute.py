"""Run notebooks in full (no FAST mode) and store their outputs in place, ready to commit.

    python notebooks/execute.py                      # every notebook
    python notebooks/execute.py 05_cnn_mnist.ipynb   # some of them
"""

import os
import pathlib
import sys

import nbclient
import nbformat

HERE = pathlib.Path(__file__).resolve().parent


def execute(path):
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=1800, resources={"metadata": {"path": str(HERE)}}
    )
    client.execute()
    nbformat.write(notebook, path)


def main(names):
    os.environ.pop("FLOWLEARN_FAST", None)
    os.environ.setdefault("MPLBACKEND", "Agg")
    # The kernel starts in notebooks/, where `import flowlearn` would find an installed copy rather than this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
    paths = [HERE / name for name in names] if names else sorted(HERE.glob("*.ipynb"))
    for path in paths:
        print(f"executing {path.name}", flush=True)
        execute(path)


if __name__ == "__main__":
    main(sys.argv[1:])
