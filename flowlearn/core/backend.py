"""Array backends: numpy on "cpu", cupy on "gpu".

cupy is imported the first time a GPU array is asked for, so a CPU-only machine never pays for it
and never needs it installed. Ops do not import numpy for array math: they receive ``xp``, the
array module of their inputs, from :func:`array_module`.
"""
import numpy

DEVICES = ("cpu", "gpu")

_cupy = None


def _load_cupy():
    """Import cupy and check that a GPU is visible, or explain what is missing."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy
    except ImportError as error:
        raise RuntimeError(
            "device='gpu' needs cupy, which is not installed. Install the gpu extra "
            "(pip install 'flowlearn[gpu]') on a machine with an NVIDIA GPU, or use device='cpu'."
        ) from error
    try:
        available = cupy.is_available()
    except Exception:  # cupy raises CUDARuntimeError subclasses of RuntimeError, or worse, per driver
        available = False
    if not available:
        raise RuntimeError(
            "device='gpu' needs an NVIDIA GPU with a working CUDA driver; cupy is installed but "
            "found no usable GPU. Use device='cpu'."
        )
    _cupy = cupy
    return cupy


def gpu_available():
    """Return True when cupy imports and sees a GPU (never raises)."""
    try:
        _load_cupy()
    except RuntimeError:
        return False
    return True


def check_device(device):
    """Validate a device name and return it."""
    if device not in DEVICES:
        raise ValueError(f"Received an invalid value for `device`: expected one of {DEVICES}, got {device!r}.")
    return device


def module_for_device(device):
    """The array module (numpy or cupy) that holds arrays on ``device``."""
    if check_device(device) == "cpu":
        return numpy
    return _load_cupy()


def array_module(array):
    """The array module of ``array``: numpy for numpy arrays and scalars, cupy for cupy arrays."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy
    return numpy


def device_of(array):
    """"cpu" or "gpu", the device that holds ``array``."""
    return "gpu" if array_module(array) is not numpy else "cpu"


def to_device(array, device):
    """Copy ``array`` to ``device`` (no copy when it already lives there)."""
    if check_device(device) == "cpu":
        if array_module(array) is numpy:
            return array
        return array.get()
    cupy = _load_cupy()
    return cupy.asarray(array)


def to_numpy(array):
    """A numpy array with the values of ``array``, wherever it lives."""
    return to_device(array, "cpu")


# -- the C allocator (opt-in) ----------------------------------------------------------------------
MALLOC_ENV = "FLOWLEARN_TUNE_MALLOC"
MALLOC_TUNED = False  # True once tune_malloc() has changed glibc's thresholds in this process


def tune_malloc():
    """Ask glibc to keep freed memory for reuse instead of handing it back to the OS at every free.

    Process-wide and not undone (glibc has no call that reads the thresholds back), so flowlearn never
    does it on its own: call this, or set ``FLOWLEARN_TUNE_MALLOC=1`` before importing flowlearn.

    A training step allocates and frees the same tens of megabytes of activations every iteration.
    Blocks above glibc's mmap threshold (at most 32 MB, and 128 KB until the first such free) go back
    to the OS when freed, and the next step faults them in again page by page. Raising the trim and
    mmap thresholds keeps those pages in the process: peak memory is unchanged, it is just not
    returned early. docs/core.md ("Memory allocator") gives the measured gain.

    Returns
    -------
    bool
        True when the thresholds were set (Linux with glibc), False where there is nothing to tune.
    """
    global MALLOC_TUNED
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    MALLOC_TUNED = bool(mallopt(m_trim_threshold, 1 << 30)) and bool(mallopt(m_mmap_threshold, 1 << 28))
    return MALLOC_TUNED


def _tune_malloc_if_asked():
    import os

    value = os.environ.get(MALLOC_ENV, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{MALLOC_ENV} must be 0 or 1; got {value!r}.")
    if value == "1":
        tune_malloc()


_tune_malloc_if_asked()
