"""TFRecord reading: what the Example protobuf costs on top of the framing, and what the input_fn adds.

For two record shapes written with ``fl.io.write_tfrecord`` (``--records`` records each):

- *tabular*: eight float features and an int64 label per record (~120 bytes a record);
- *image*: a 28x28 float32 ``x`` (784 floats) and an int64 label (~3.2 KB a record);

one pass over the file by

1. a plain loop over the framing only (read length, check both masked CRC32C checksums, slice the data),
   written here with ``struct`` and ``crc32c``, no protobuf: the floor for any reader of the format;
2. ``read_tfrecord(path, raw=True)`` (flowlearn's framing loop, the same work);
3. ``read_tfrecord(path)`` (framing + protobuf parse + conversion of every feature to numpy);
4. ``tfrecord_input_fn`` without shuffling, batches of 256, synchronous (``prefetch_buffer_size=0``);
5. the same with shuffling (buffer 1,000) and the default prefetch thread.

Every variant runs in one process, interleaved, ``--repeats`` times; medians are printed with records/s and
the ratio to the framing loop. On a busy machine compare the ratios, not the absolute numbers.

Run: ``python benchmarks/tfrecord_bench.py`` (about half a minute on two cores), ``--records 5000`` for a quick look.
"""
import argparse
import statistics
import struct
import sys
import tempfile
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_times, machine_line  # noqa: E402


def framing_only(path):
    """The records' data, checked, with nothing but struct and crc32c: the floor for reading the format."""
    import crc32c

    def masked(data):
        crc = crc32c.crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    count = 0
    with open(path, "rb") as handle:
        while True:
            header = handle.read(12)
            if not header:
                return count
            length, length_crc = struct.unpack("<QI", header)
            assert masked(header[:8]) == length_crc
            data = handle.read(length)
            assert masked(data) == struct.unpack("<I", handle.read(4))[0]
            count += 1


def write(path, kind, n, seed=0):
    from flowlearn.io import write_tfrecord

    rng = numpy.random.default_rng(seed)
    width = 8 if kind == "tabular" else 784
    write_tfrecord(path, ({"x": rng.random(width, dtype=numpy.float32), "label": int(rng.integers(10))}
                          for _ in range(n)))
    return width


def bench(path, width, repeats):
    from flowlearn.io import FixedLenFeature, read_tfrecord, tfrecord_input_fn

    spec = {"x": FixedLenFeature((width,), "float32"), "label": FixedLenFeature((), "int64")}

    def batches(**options):
        input_fn = tfrecord_input_fn(str(path), spec, label_key="label", batch_size=256, seed=0, **options)
        return sum(len(labels) for _, labels in input_fn())

    variants = {
        "framing only (struct + crc32c loop)": lambda: framing_only(path),
        "read_tfrecord(raw=True)": lambda: sum(1 for _ in read_tfrecord(path, raw=True)),
        "read_tfrecord (parse to dicts)": lambda: sum(1 for _ in read_tfrecord(path)),
        "tfrecord_input_fn, no shuffle, synchronous": lambda: batches(shuffle=False, prefetch_buffer_size=0),
        "tfrecord_input_fn, shuffle 1000, prefetch": lambda: batches(shuffle=True),
    }
    counts = {name: run() for name, run in variants.items()}  # warm-up: page cache, imports
    assert len(set(counts.values())) == 1, counts
    times = interleaved_times(variants, repeats)
    n = next(iter(counts.values()))
    base = statistics.median(times["framing only (struct + crc32c loop)"])
    print(f"{'':44s} {'s':>7s} {'records/s':>11s} {'time vs framing':>16s}")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:44s} {median:7.3f} {n / median:11,.0f} {median / base:15.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("tabular", "image"):
            path = Path(folder) / f"{kind}.tfrecord"
            width = write(path, kind, args.records)
            print(f"\n{kind}: {args.records:,} records of {width} floats + a label, "
                  f"{path.stat().st_size / 2**20:.1f} MiB (median of {args.repeats})")
            bench(path, width, args.repeats)


if __name__ == "__main__":
    main()
