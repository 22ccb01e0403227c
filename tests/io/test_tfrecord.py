"""TFRecord files: framing and Example bytes checked against the published formats, damage named by file and
offset, atomic writes, and tfrecord_input_fn feeding the trainers."""
import gc
import gzip
import os
import struct
import threading
import tracemalloc
import zlib

import numpy
import pytest

crc32c = pytest.importorskip("crc32c")
pytest.importorskip("google.protobuf")

import flowlearn as fl  # noqa: E402
from flowlearn.core import optimizers  # noqa: E402
from flowlearn.io import tfrecord  # noqa: E402
from flowlearn.io.tfrecord import (FixedLenFeature, TFRecordWriter, VarLenFeature, read_tfrecord,  # noqa: E402
                                   tfrecord_input_fn, write_tfrecord)


def _threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("flowlearn-tfrecord")]


@pytest.fixture(autouse=True)
def _no_thread_left():
    yield
    if _threads():  # an abandoned iterator stops its thread when collected (a full collection costs ~0.25 s)
        gc.collect()
    assert not _threads(), "a tfrecord_input_fn thread outlived its test"


# -- the published formats, rebuilt here independently --------------------------------------------------------
def _masked(data):
    """TFRecord's masked CRC32C, written out from the format description."""
    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) % (1 << 32)


def _frame(data):
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked(length)) + data + struct.pack("<I", _masked(data))


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _len_field(number, payload):
    """A length-delimited protobuf field (wire type 2): tag, varint length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _example(entries):
    """Example{features: Features{feature: map entries}} from ``(name, Feature bytes)`` pairs, in order."""
    features = b"".join(_len_field(1, _len_field(1, name.encode()) + _len_field(2, feature))
                        for name, feature in entries)
    return _len_field(1, features)


def test_the_crc_package_gives_the_standard_check_value():
    # CRC-32C (Castagnoli) of "123456789" is 0xE3069283 (RFC 3720, appendix B.4): the checksum under the mask.
    assert crc32c.crc32c(b"123456789") == 0xE3069283
    assert tfrecord.masked_crc32c(b"123456789") == _masked(b"123456789")
    assert tfrecord.masked_crc32c(b"") == 0xA282EAD8  # CRC of nothing is 0: only the mask's constant is left


def test_example_bytes_follow_the_protobuf_wire_format():
    # Feature{int64_list(3): Int64List{value(1), packed: [1, 300]}}, 300 = varint ac 02.
    int64_feature = _len_field(3, _len_field(1, b"\x01\xac\x02"))
    # Feature{float_list(2): FloatList{value(1), packed little-endian float32 [1.5, -2]}}.
    float_feature = _len_field(2, _len_field(1, struct.pack("<2f", 1.5, -2.0)))
    # Feature{bytes_list(1): BytesList{value(1): b"cat", value(1): b""}} (repeated bytes are never packed).
    bytes_feature = _len_field(1, _len_field(1, b"cat") + _len_field(1, b""))
    expected = _example([("a", int64_feature), ("b", float_feature), ("c", bytes_feature)])
    # Given out of order: map entries are written sorted by name, so a dict always gives the same bytes.
    got = tfrecord.encode_example({"c": [b"cat", ""], "a": [1, 300], "b": numpy.array([1.5, -2.0])})
    assert got == expected
    assert tfrecord.encode_example({"label": 1}) == bytes.fromhex("0a100a0e0a056c6162656c12051a030a0101")
    decoded = tfrecord.decode_example(expected)
    assert decoded["a"].dtype == numpy.int64 and decoded["a"].tolist() == [1, 300]
    assert decoded["b"].dtype == numpy.float32 and decoded["b"].tolist() == [1.5, -2.0]
    assert decoded["c"] == [b"cat", b""]


def test_the_framing_matches_the_published_format(tmp_path):
    examples = [{"x": [0.25, 0.5], "label": 3}, {"x": [1.0, -1.0], "label": 0}]
    path = tmp_path / "two.tfrecord"
    assert write_tfrecord(path, examples) == 2
    expected = b"".join(_frame(tfrecord.encode_example(example)) for example in examples)
    assert path.read_bytes() == expected
    assert list(read_tfrecord(path, raw=True)) == [tfrecord.encode_example(example) for example in examples]


@pytest.mark.parametrize("compression", ["GZIP", "ZLIB"])
def test_compressed_files_are_the_framed_records_compressed(tmp_path, compression):
    examples = [{"i": i, "name": f"n{i}"} for i in range(50)]
    path = tmp_path / "data.tfrecord"
    write_tfrecord(path, examples, compression_type=compression)
    framed = b"".join(_frame(tfrecord.encode_example(example)) for example in examples)
    stored = path.read_bytes()
    assert (gzip.decompress(stored) if compression == "GZIP" else zlib.decompress(stored)) == framed
    assert [record["i"].tolist() for record in read_tfrecord(path, compression_type=compression.lower())] == \
        [[i] for i in range(50)]


@pytest.mark.parametrize("compression", [None, "GZIP", "ZLIB"])
def test_every_value_type_round_trips(tmp_path, compression):
    image = numpy.arange(24, dtype=numpy.uint8).reshape(2, 3, 4)
    example = {
        "bytes": b"\x00\xffraw", "text": "héllo", "byte_list": [b"a", "b", bytearray(b"c")],
        "int": 7, "negative": -(2 ** 63), "bool": True, "numpy_int": numpy.int16(-5), "int_list": [1, 2, 3],
        "int_array": image, "uint64_max_fit": numpy.array([2 ** 63 - 1], numpy.uint64),
        "float": 0.1, "float_list": [1.0, 2.5], "float_array": numpy.linspace(0, 1, 6).reshape(2, 3),
        "float16": numpy.array([0.5], numpy.float16), "mixed_numbers": [1, 2.5], "empty": [],
        "empty_ints": numpy.zeros(0, numpy.int64), "str_array": numpy.array(["x", "yz"]),
        "object_ints": numpy.array([1, 2], object), "object_floats": numpy.array([0.5, 1], object),
        "object_text": numpy.array([b"p", "q"], object),
    }
    path = tmp_path / "all.tfrecord"
    write_tfrecord(path, [example, example], compression_type=compression)
    records = list(read_tfrecord(path, compression_type=compression))
    assert len(records) == 2 and records[0].keys() == records[1].keys() == set(example)
    got = records[0]
    assert list(got) == sorted(example)
    assert got["bytes"] == [b"\x00\xffraw"] and got["text"] == ["héllo".encode()]
    assert got["byte_list"] == [b"a", b"b", b"c"] and got["str_array"] == [b"x", b"yz"]
    for name, values in [("int", [7]), ("negative", [-(2 ** 63)]), ("bool", [1]), ("numpy_int", [-5]),
                         ("int_list", [1, 2, 3]), ("int_array", image.ravel().tolist()),
                         ("uint64_max_fit", [2 ** 63 - 1]), ("object_ints", [1, 2])]:
        assert got[name].dtype == numpy.int64 and got[name].tolist() == values, name
    for name, values in [("float", [0.1]), ("float_list", [1.0, 2.5]), ("float_array", numpy.linspace(0, 1, 6)),
                         ("float16", [0.5]), ("mixed_numbers", [1.0, 2.5]), ("object_floats", [0.5, 1.0])]:
        assert got[name].dtype == numpy.float32, name
        numpy.testing.assert_array_equal(got[name], numpy.asarray(values, numpy.float32))
    assert got["object_text"] == [b"p", b"q"]
    assert got["empty"] == []
    assert got["empty_ints"].dtype == numpy.int64 and got["empty_ints"].size == 0


@pytest.mark.parametrize("value, expected", [
    (None, "got NoneType None"),
    ({1, 2}, "got set"),
    ({"a": 1}, "got dict"),
    ([1, "a"], "not both"),
    ([[1, 2], [3]], "rectangular"),
    (2 ** 70, "int64"),
    (numpy.array([2 ** 64 - 1], numpy.uint64), "2**63 - 1"),
    (1 + 2j, "got complex"),
    (object(), "got object"),
    (numpy.array([1, None], object), "got ndarray of shape (2,)"),
])
def test_bad_values_name_the_example_the_feature_and_the_type(tmp_path, value, expected):
    path = tmp_path / "bad.tfrecord"
    with pytest.raises(ValueError, match="feature 'x'") as caught:
        write_tfrecord(path, [{"x": 1}, {"ok": 1.0, "x": value}])
    assert "example 1" in str(caught.value) and expected in str(caught.value)
    assert not os.listdir(tmp_path)  # nothing written, not even the first record


def test_parse_example_applies_a_spec_to_one_record():
    data = tfrecord.encode_example({"x": [1.0, 2.0, 3.0, 4.0], "name": "cat", "ignored": 1})
    parsed = tfrecord.parse_example(data, {"x": FixedLenFeature((2, 2), "float32"), "name": VarLenFeature(bytes),
                                           "k": FixedLenFeature((), numpy.int64, default_value=-1)})
    assert sorted(parsed) == ["k", "name", "x"] and parsed["x"].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert parsed["name"].tolist() == [b"cat"] and parsed["k"].tolist() == -1
    with pytest.raises(ValueError, match=r"parse_example: features\['x'\] must be a FixedLenFeature"):
        tfrecord.parse_example(data, {"x": "float32"})
    with pytest.raises(ValueError, match="decode_example: the data is not a serialized tf.train.Example"):
        tfrecord.decode_example(b"\xff")


def test_examples_must_be_dicts_with_string_names(tmp_path):
    with pytest.raises(ValueError, match=r"example 0: expected a dict .* got bytes .*TFRecordWriter.write"):
        write_tfrecord(tmp_path / "a.tfrecord", [b"serialized"])
    with pytest.raises(ValueError, match="feature names must be str; got int"):
        write_tfrecord(tmp_path / "a.tfrecord", [{1: 2}])


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "data.tfrecord"
    write_tfrecord(path, [{"v": 1}])
    before = path.read_bytes()

    def examples():
        yield {"v": 2}
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        write_tfrecord(path, examples())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["data.tfrecord"]  # no temporary left behind


def test_the_streaming_writer_puts_the_file_in_place_on_close_only(tmp_path):
    path = tmp_path / "stream.tfrecord"
    writer = TFRecordWriter(path, compression_type="GZIP")
    writer.write_example({"i": 0})
    writer.write(tfrecord.encode_example({"i": 1}))
    assert not path.exists()
    writer.close()
    writer.close()  # a second close does nothing
    assert [record["i"].tolist() for record in read_tfrecord(path, compression_type="GZIP")] == [[0], [1]]
    with pytest.raises(ValueError, match="is closed"):
        writer.write(b"x")
    with pytest.raises(TypeError, match="expected the record as bytes; got dict"):
        TFRecordWriter(tmp_path / "other.tfrecord").write({"i": 2})
    with pytest.raises(KeyError):
        with TFRecordWriter(path) as failing:
            failing.write_example({"i": 9})
            raise KeyError("stop")
    aborted = TFRecordWriter(path)
    aborted.write_example({"i": 9})
    aborted.abort()
    gc.collect()
    assert [record["i"].tolist() for record in read_tfrecord(path, compression_type="GZIP")] == [[0], [1]]
    assert sorted(os.listdir(tmp_path)) == ["stream.tfrecord"]


def test_gzip_output_is_reproducible(tmp_path):
    # No file name and mtime 0 in the GZIP header: the same records give the same bytes (cacheable, diffable).
    write_tfrecord(tmp_path / "a.tfrecord", [{"i": 1}], compression_type="GZIP")
    write_tfrecord(tmp_path / "b.tfrecord", [{"i": 1}], compression_type="GZIP")
    assert (tmp_path / "a.tfrecord").read_bytes() == (tmp_path / "b.tfrecord").read_bytes()


# -- damage ------------------------------------------------------------------------------------------------------
def _three_records(tmp_path):
    path = tmp_path / "three.tfrecord"
    write_tfrecord(path, [{"i": i, "pad": b"x" * 10} for i in range(3)])
    size = len(_frame(tfrecord.encode_example({"i": 0, "pad": b"x" * 10})))
    return path, bytearray(path.read_bytes()), size


def _read_all(path, **kwargs):
    return list(read_tfrecord(path, **kwargs))


def test_a_damaged_length_is_named_with_the_record_offset(tmp_path):
    path, data, size = _three_records(tmp_path)
    data[size + 2] ^= 0x01  # record 1's length field
    path.write_bytes(bytes(data))
    reader = read_tfrecord(path)
    assert next(reader)["i"].tolist() == [0]  # the records before the damage arrive
    with pytest.raises(ValueError, match=rf"three.tfrecord: corrupt TFRecord, record 1 at byte offset {size}: "
                                         r"the checksum of the length field"):
        next(reader)


@pytest.mark.parametrize("where", ["length checksum", "data", "data checksum"])
def test_damaged_data_or_checksums_are_named(tmp_path, where):
    path, data, size = _three_records(tmp_path)
    position = {"length checksum": 2 * size + 9, "data": 2 * size + 14, "data checksum": 3 * size - 1}[where]
    data[position] ^= 0x40
    path.write_bytes(bytes(data))
    reason = "length field" if where == "length checksum" else "the checksum of the data does not match"
    with pytest.raises(ValueError, match=rf"record 2 at byte offset {2 * size}: .*{reason}"):
        _read_all(path, raw=True)


@pytest.mark.parametrize("cut, reason", [
    (5, "ends 5 bytes into the 12-byte record header"),
    (14, "declares"),
    (-2, "declares"),
])
def test_truncated_files_are_named(tmp_path, cut, reason):
    path, data, size = _three_records(tmp_path)
    end = 2 * size + cut if cut > 0 else 3 * size + cut
    path.write_bytes(bytes(data[:end]))
    with pytest.raises(ValueError, match=rf"record 2 at byte offset {2 * size}: truncated.*{reason}"):
        _read_all(path)


@pytest.mark.parametrize("compression", ["GZIP", "ZLIB"])
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_compressed_files_are_named(tmp_path, compression, damage):
    path = tmp_path / "data.tfrecord"
    rng = numpy.random.default_rng(0)
    write_tfrecord(path, [{"v": rng.integers(1000, size=100)} for _ in range(20)], compression_type=compression)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        del data[-30:]
    else:
        data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"data.tfrecord: corrupt TFRecord, record \d+ at decompressed byte offset"):
        _read_all(path, compression_type=compression)


def test_records_that_are_not_examples_are_named(tmp_path):
    path = tmp_path / "garbage.tfrecord"
    good = tfrecord.encode_example({"v": 1})
    path.write_bytes(_frame(good) + _frame(b"\xff\xff\xff\xff"))  # framed right, but no protobuf message
    with pytest.raises(ValueError, match=rf"garbage.tfrecord: record 1 at byte offset {len(_frame(good))} is not "
                                         r"a serialized tf.train.Example"):
        _read_all(path)
    assert len(_read_all(path, raw=True)) == 2  # raw records need only the framing


def test_a_compressed_file_read_as_plain_gets_a_hint(tmp_path):
    path = tmp_path / "data.tfrecord.gz"
    write_tfrecord(path, [{"v": 1}], compression_type="GZIP")
    with pytest.raises(ValueError, match="compression_type='GZIP'"):
        _read_all(path)


def test_a_declared_length_beyond_the_file_is_refused_before_reading(tmp_path):
    # A crafted header (checksum right, length 2**40) must not make the reader allocate a terabyte.
    length = struct.pack("<Q", 1 << 40)
    path = tmp_path / "huge.tfrecord"
    path.write_bytes(length + struct.pack("<I", _masked(length)) + b"tiny")
    with pytest.raises(ValueError, match=r"record 0 at byte offset 0: truncated: the record declares 1099511627776 "
                                         r"data bytes, the file holds 4 more bytes"):
        _read_all(path)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="compression_type.*Received: compression_type='BZIP2'"):
        read_tfrecord(tmp_path / "x", compression_type="BZIP2")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_tfrecord(tmp_path / "missing.tfrecord")
    with pytest.raises(ValueError, match="`dtype`, expected 'float32', 'int64' or 'string'. Received: dtype='float64'"):
        FixedLenFeature((), "float64")
    with pytest.raises(ValueError, match="`shape`.*Received: shape=-1"):
        FixedLenFeature(-1, "int64")
    with pytest.raises(ValueError, match=r"default_value must be a scalar or hold 3 values \(shape \(3,\)\)"):
        FixedLenFeature(3, "float32", default_value=[1.0, 2.0])
    with pytest.raises(ValueError, match="default_value must be int64 values; got float 0.5 of dtype float64"):
        FixedLenFeature((), "int64", default_value=0.5)
    with pytest.raises(ValueError, match="default_value must be float32 values; got str 'a'"):
        FixedLenFeature((), "float32", default_value="a")
    with pytest.raises(ValueError, match="a 'string' feature's default_value must be bytes or str; got int 1"):
        FixedLenFeature((), "string", default_value=1)


# -- tfrecord_input_fn ------------------------------------------------------------------------------------------
def _write_parts(folder, parts=3, per_part=20):
    for part in range(parts):
        write_tfrecord(folder / f"part-{part}.tfrecord", (
            {"x": numpy.full((2, 3), i, numpy.float32), "label": i, "name": f"n{i}", "tags": ["t"] * (i % 4)}
            for i in range(per_part * part, per_part * (part + 1))))
    return str(folder / "part-*.tfrecord")


_SPEC = {"x": FixedLenFeature((2, 3), "float32"), "label": FixedLenFeature((), "int64")}


def _labels(input_fn):
    return [labels.tolist() for _, labels in input_fn()]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_batches_hold_every_record_once_per_epoch(tmp_path, prefetch):
    pattern = _write_parts(tmp_path)
    input_fn = tfrecord_input_fn(pattern, _SPEC, label_key="label", batch_size=7, num_epochs=2, seed=1,
                                 shuffle_buffer_size=10, prefetch_buffer_size=prefetch)
    batches = list(input_fn())
    assert [len(labels) for _, labels in batches] == [7] * 8 + [4] + [7] * 8 + [4]  # epochs never share a batch
    for epoch in (batches[:9], batches[9:]):
        labels = numpy.concatenate([labels for _, labels in epoch])
        assert sorted(labels.tolist()) == list(range(60)) and labels.tolist() != list(range(60))
    features, labels = batches[0]
    assert list(features) == ["x"] and features["x"].shape == (7, 2, 3) and features["x"].dtype == numpy.float32
    assert labels.dtype == numpy.int64
    numpy.testing.assert_array_equal(features["x"][:, 1, 2], labels.astype(numpy.float32))


def test_seeded_batches_are_reproducible_and_depend_on_the_seed(tmp_path):
    pattern = _write_parts(tmp_path)

    def make(seed, **kwargs):
        return tfrecord_input_fn(pattern, _SPEC, label_key="label", batch_size=8, seed=seed, shuffle_buffer_size=16,
                                 **kwargs)

    first = _labels(make(3))
    assert first == _labels(make(3)) == _labels(make(3, num_parallel_calls=2, num_parallel_reads=1))
    assert first != _labels(make(4))
    iterable = make(3)()
    assert [labels.tolist() for _, labels in iterable] == first
    assert [labels.tolist() for _, labels in iterable] != first  # iterating again reshuffles, as tf.data does
    fl.layers.set_random_seed(5)
    unseeded = _labels(make(None))
    fl.layers.set_random_seed(5)
    assert _labels(make(None)) == unseeded


def test_without_shuffle_files_are_interleaved_record_by_record(tmp_path):
    pattern = _write_parts(tmp_path, parts=3, per_part=3)
    one_by_one = tfrecord_input_fn(pattern, _SPEC, label_key="label", batch_size=100, shuffle=False)
    assert _labels(one_by_one) == [list(range(9))]
    two_at_once = tfrecord_input_fn(pattern, _SPEC, label_key="label", batch_size=100, shuffle=False,
                                    num_parallel_reads=2)
    assert _labels(two_at_once) == [[0, 3, 1, 4, 2, 5, 6, 7, 8]]  # part-2 takes part-0's turn when it ends


def test_shuffle_buffer_bounds_how_far_a_record_travels(tmp_path):
    pattern = _write_parts(tmp_path, parts=1, per_part=200)
    input_fn = tfrecord_input_fn(pattern, _SPEC, label_key="label", batch_size=200, shuffle_buffer_size=10, seed=0)
    (labels,) = _labels(input_fn)
    # A record leaves the buffer no earlier than its own arrival: position >= index - buffer size.
    assert all(position >= label - 10 for position, label in enumerate(labels))
    assert labels != sorted(labels)


def test_defaults_strings_and_var_len_features(tmp_path):
    pattern = _write_parts(tmp_path, parts=1, per_part=6)
    spec = {"label": FixedLenFeature([], "int64"), "name": FixedLenFeature((), "string"),
            "tags": VarLenFeature("string"), "x": VarLenFeature("float32"),
            "weight": FixedLenFeature((2,), "float32", default_value=0.5),
            "color": FixedLenFeature((), "string", default_value="red")}
    (features, labels), = tfrecord_input_fn(pattern, spec, label_key="label", batch_size=6, shuffle=False)()
    assert labels.tolist() == list(range(6))
    assert features["name"].dtype == object and features["name"].tolist() == [f"n{i}".encode() for i in range(6)]
    assert features["tags"].shape == (6, 3)  # padded to the longest row (3 tags) with b""
    assert features["tags"][1].tolist() == [b"t", b"", b""] and features["tags"][0].tolist() == [b"", b"", b""]
    assert features["x"].shape == (6, 6) and features["x"].dtype == numpy.float32
    assert features["weight"].tolist() == [[0.5, 0.5]] * 6 and features["color"].tolist() == [b"red"] * 6


def test_missing_or_mismatched_features_name_the_feature_and_the_record(tmp_path):
    path = tmp_path / "data.tfrecord"
    write_tfrecord(path, [{"x": [1.0, 2.0], "label": 0}, {"x": [1.0, 2.0]}, {"x": [1.0], "label": 1}])
    offset = len(_frame(tfrecord.encode_example({"x": [1.0, 2.0], "label": 0})))

    def read(spec):
        return list(tfrecord_input_fn(path, spec, batch_size=10, shuffle=False)())

    with pytest.raises(ValueError, match=rf"data.tfrecord, record 1 at byte offset {offset}: the record has no "
                                         r"feature 'label', and features\['label'\] has no default_value"):
        read({"x": FixedLenFeature(2, "float32"), "label": FixedLenFeature((), "int64")})
    with pytest.raises(ValueError, match=r"record 2 .*feature 'x' holds 1 values; features\['x'\] = "
                                         r"FixedLenFeature\(shape=\(2,\)\) expects 2"):
        read({"x": FixedLenFeature(2, "float32")})
    with pytest.raises(ValueError, match=r"record 0 .*feature 'x' holds float_list \(float32\) values; "
                                         r"features\['x'\] declares dtype 'int64'"):
        read({"x": FixedLenFeature(2, "int64")})


def test_map_fn_sees_each_parsed_record(tmp_path):
    pattern = _write_parts(tmp_path, parts=1, per_part=5)

    def scale(record):  # what an image decoder would do with encoded bytes
        return {"x": numpy.array([record["x"].sum() / 6.0]), "label": record["label"]}

    for calls in (None, 2):
        (features, labels), = tfrecord_input_fn(pattern, _SPEC, label_key="label", batch_size=5, shuffle=False,
                                                map_fn=scale, num_parallel_calls=calls)()
        assert features["x"].tolist() == [[float(i)] for i in range(5)] and labels.tolist() == list(range(5))
    with pytest.raises(ValueError, match="map_fn must return a dict"):
        list(tfrecord_input_fn(pattern, _SPEC, shuffle=False, map_fn=lambda record: 1)())


def test_encoded_images_in_records_are_decoded_by_map_fn(tmp_path):
    # The usual image TFRecord: PNG/JPEG bytes plus a label, decoded in the pipeline's map step.
    image_module = pytest.importorskip("PIL.Image")
    import io

    rng = numpy.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=numpy.uint8)

    def png(array):
        stream = io.BytesIO()
        image_module.fromarray(array).save(stream, format="PNG")
        return stream.getvalue()

    write_tfrecord(tmp_path / "images.tfrecord", ({"image": png(array), "label": k % 3}
                                                  for k, array in enumerate(pixels)))

    def decode(record):
        image = image_module.open(io.BytesIO(record["image"].item()))
        return {"image": numpy.asarray(image, numpy.float32) / 255.0, "label": record["label"]}

    spec = {"image": FixedLenFeature((), "string"), "label": FixedLenFeature((), "int64")}
    (features, labels), = tfrecord_input_fn(tmp_path / "images.tfrecord", spec, label_key="label", batch_size=6,
                                            shuffle=False, map_fn=decode, num_parallel_calls=2)()
    assert features["image"].shape == (6, 8, 8, 3) and features["image"].dtype == numpy.float32
    numpy.testing.assert_array_equal(features["image"], pixels / numpy.float32(255.0))
    assert labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_num_epochs_none_repeats_and_stops_its_thread_when_abandoned(tmp_path):
    pattern = _write_parts(tmp_path, parts=1, per_part=5)
    input_fn = tfrecord_input_fn(pattern, _SPEC, label_key="label", batch_size=2, num_epochs=None, seed=0)
    batches = input_fn()
    assert batches.cardinality() == fl.layers.data_adapter.INFINITE
    iterator = iter(batches)
    assert sum(len(labels) for _, labels in (next(iterator) for _ in range(12))) == 20  # 4 epochs of 2 + 2 + 1
    iterator.close()
    assert not _threads()
    assert tfrecord_input_fn(pattern, _SPEC)().cardinality() == fl.layers.data_adapter.UNKNOWN
    empty = tmp_path / "empty.tfrecord"
    write_tfrecord(empty, [])
    with pytest.raises(ValueError, match="num_epochs=None, but the files hold no records"):
        list(tfrecord_input_fn(empty, _SPEC, num_epochs=None)())


def test_a_damaged_file_reaches_the_consumer_after_the_good_batches(tmp_path):
    pattern = _write_parts(tmp_path, parts=1, per_part=10)
    path = tmp_path / "part-0.tfrecord"
    path.write_bytes(path.read_bytes()[:-3])
    iterator = iter(tfrecord_input_fn(pattern, _SPEC, label_key="label", batch_size=4, shuffle=False)())
    assert [len(next(iterator)[1]) for _ in range(2)] == [4, 4]
    with pytest.raises(ValueError, match=r"part-0.tfrecord: corrupt TFRecord, record 9 at byte offset \d+: truncated"):
        next(iterator)


def test_settings_are_checked_when_the_input_fn_is_made(tmp_path):
    pattern = _write_parts(tmp_path, parts=1, per_part=2)
    for kwargs, message in [
        ({"batch_size": 0}, "`batch_size`, expected a positive integer. Received: batch_size=0"),
        ({"shuffle_buffer_size": 0}, "Received: shuffle_buffer_size=0"),
        ({"num_parallel_reads": -1}, "Received: num_parallel_reads=-1"),
        ({"prefetch_buffer_size": -1}, "expected a non-negative integer. Received: prefetch_buffer_size=-1"),
        ({"label_key": "y"}, "label_key='y' is not one of the features"),
        ({"features": {"x": "float32"}}, r"features\['x'\] must be a FixedLenFeature or a VarLenFeature"),
        ({"map_fn": 3}, "`map_fn` must be callable"),
    ]:
        arguments = {"features": _SPEC, **kwargs}
        with pytest.raises(ValueError, match=message):
            tfrecord_input_fn(pattern, **arguments)
    with pytest.raises(FileNotFoundError, match="no such file"):
        tfrecord_input_fn(tmp_path / "missing.tfrecord", _SPEC)
    with pytest.raises(ValueError, match="matches no file"):
        tfrecord_input_fn(str(tmp_path / "nothing-*.tfrecord"), _SPEC)
    files = [tmp_path / "part-0.tfrecord", str(tmp_path / "part-*.tfrecord")]
    assert tfrecord_input_fn(files, _SPEC).files == [str(tmp_path / "part-0.tfrecord")] * 2


def test_files_stream_in_bounded_memory(tmp_path):
    path = tmp_path / "big.tfrecord"
    write_tfrecord(path, ({"x": numpy.full(1024, i, numpy.float32), "label": i} for i in range(1000)))
    assert path.stat().st_size > 4_000_000
    spec = {"x": FixedLenFeature(1024, "float32"), "label": FixedLenFeature((), "int64")}
    input_fn = tfrecord_input_fn(path, spec, label_key="label", batch_size=10, shuffle_buffer_size=20, seed=0,
                                 prefetch_buffer_size=0)
    tracemalloc.start()
    try:
        count = sum(len(labels) for _, labels in input_fn())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 1000
    assert peak < 1_000_000, f"peak {peak} bytes while streaming a {path.stat().st_size}-byte file"


def test_sequential_fit_from_a_tfrecord_file_beats_chance_by_far(tmp_path):
    rng = numpy.random.default_rng(0)
    centers = numpy.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.5]])
    labels = rng.integers(3, size=600)
    points = (centers[labels] + rng.normal(scale=1.0, size=(600, 2))).astype(numpy.float32)
    write_tfrecord(tmp_path / "train.tfrecord", ({"x": point, "y": int(label)} for point, label in
                                                 zip(points[:450], labels[:450])))
    write_tfrecord(tmp_path / "test.tfrecord", ({"x": point, "y": int(label)} for point, label in
                                                zip(points[450:], labels[450:])))
    spec = {"x": FixedLenFeature((2,), "float32"), "y": FixedLenFeature((), "int64")}
    fl.layers.set_random_seed(0)
    model = fl.Sequential([fl.layers.Input((2,)), fl.layers.Dense(16, activation="relu"),
                           fl.layers.Dense(3, activation="softmax")])
    model.compile(optimizers.Adam(learning_rate=0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(tfrecord_input_fn(tmp_path / "train.tfrecord", spec, label_key="y", batch_size=32, seed=0), epochs=8,
              verbose=0)
    _, accuracy = model.evaluate(tfrecord_input_fn(tmp_path / "test.tfrecord", spec, label_key="y", batch_size=64,
                                                   shuffle=False))
    assert accuracy > 0.8  # chance is 1/3; the classes overlap, so about 0.9 is the best any model does


def test_fit_on_an_unshuffled_tfrecord_input_fn_matches_fit_on_the_arrays(tmp_path):
    rng = numpy.random.default_rng(2)
    x = rng.normal(size=(100, 4)).astype(numpy.float32)
    y = (x[:, 0] - x[:, 2] > 0).astype(numpy.int64)
    write_tfrecord(tmp_path / "train.tfrecord", ({"x": row, "y": int(label)} for row, label in zip(x, y)))
    spec = {"x": FixedLenFeature(4, "float32"), "y": FixedLenFeature((), "int64")}

    def fresh_model():
        fl.layers.set_random_seed(0)
        model = fl.Sequential([fl.layers.Input((4,)), fl.layers.Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    on_arrays, on_records = fresh_model(), fresh_model()
    on_arrays.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    on_records.fit(tfrecord_input_fn(tmp_path / "train.tfrecord", spec, label_key="y", batch_size=16, shuffle=False),
                   epochs=2, verbose=0)
    for p, q in zip(on_arrays.get_weights(), on_records.get_weights()):
        numpy.testing.assert_array_equal(p, q)


def test_a_model_fn_estimator_trains_on_tfrecord_files(tmp_path):
    from flowlearn.core import losses
    from flowlearn.estimators import Estimator, EstimatorSpec, ModeKeys, RunConfig

    rng = numpy.random.default_rng(1)
    x = rng.normal(size=(400, 3)).astype(numpy.float32)
    y = x @ numpy.array([1.0, -2.0, 0.5], numpy.float32) + 0.3
    write_tfrecord(tmp_path / "train.tfrecord", ({"x": row, "y": float(target)} for row, target in zip(x, y)))
    spec = {"x": FixedLenFeature(3, "float32"), "y": FixedLenFeature((), "float32")}

    def model_fn(features, labels, mode):
        prediction = fl.layers.dense(features["x"], 1)
        if mode == ModeKeys.PREDICT:
            return EstimatorSpec(mode, predictions={"y": prediction})
        loss = losses.mean_squared_error(labels.reshape(-1, 1), prediction)
        train_op = fl.train.AdamOptimizer(0.1).minimize(loss, global_step=fl.train.get_global_step())
        return EstimatorSpec(mode, loss=loss, train_op=train_op)

    estimator = Estimator(model_fn, model_dir=str(tmp_path / "model"),
                          config=RunConfig(tf_random_seed=0, save_summary_steps=None, log_step_count_steps=None))
    estimator.train(tfrecord_input_fn(tmp_path / "train.tfrecord", spec, label_key="y", batch_size=50,
                                      num_epochs=None, seed=0), steps=120)
    result = estimator.evaluate(tfrecord_input_fn(tmp_path / "train.tfrecord", spec, label_key="y", batch_size=100,
                                                  shuffle=False))
    assert result["global_step"] == 120 and result["loss"] < 1e-2  # the labels' variance is about 5


# -- TensorFlow itself, when it is installed ---------------------------------------------------------------------
def test_tensorflow_reads_our_files_and_we_read_its_files(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="optional: checks the files against TensorFlow when it is "
                                                  "installed")
    examples = [{"x": [1.5 * i, 2.5], "label": i, "name": f"n{i}", "tags": [b"t"] * i} for i in range(4)]
    for compression in (None, "GZIP", "ZLIB"):
        ours = tmp_path / f"ours-{compression}.tfrecord"
        write_tfrecord(ours, examples, compression_type=compression)
        dataset = tf.data.TFRecordDataset(str(ours), compression_type=compression or "").batch(4)
        parsed = tf.io.parse_example(next(iter(dataset)), {
            "x": tf.io.FixedLenFeature([2], tf.float32), "label": tf.io.FixedLenFeature([], tf.int64),
            "name": tf.io.FixedLenFeature([], tf.string), "tags": tf.io.VarLenFeature(tf.string)})
        (features, labels), = tfrecord_input_fn(ours, {
            "x": FixedLenFeature([2], "float32"), "label": FixedLenFeature([], "int64"),
            "name": FixedLenFeature([], "string"), "tags": VarLenFeature("string")},
            label_key="label", batch_size=4, shuffle=False, compression_type=compression)()
        numpy.testing.assert_array_equal(parsed["x"].numpy(), features["x"])
        assert parsed["label"].numpy().tolist() == labels.tolist() == [0, 1, 2, 3]
        assert parsed["name"].numpy().tolist() == features["name"].tolist()
        assert tf.sparse.to_dense(parsed["tags"]).numpy().tolist() == features["tags"].tolist()

        theirs = tmp_path / f"theirs-{compression}.tfrecord"
        with tf.io.TFRecordWriter(str(theirs), options=compression or "") as writer:
            for example in examples:
                message = tf.train.Example(features=tf.train.Features(feature={
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=example["x"])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[example["label"]])),
                    "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[example["name"].encode()])),
                    # An empty list has no kind to write: a Feature with none set (TensorFlow parses it as empty).
                    "tags": tf.train.Feature(bytes_list=tf.train.BytesList(value=example["tags"]))
                    if example["tags"] else tf.train.Feature()}))
                assert tfrecord.encode_example(example) == message.SerializeToString(deterministic=True)
                writer.write(message.SerializeToString(deterministic=True))
        records = list(read_tfrecord(theirs, compression_type=compression))
        assert [record["label"].tolist() for record in records] == [[0], [1], [2], [3]]
        assert [record["tags"] for record in records] == [example["tags"] for example in examples]
        if compression is None:
            assert theirs.read_bytes() == ours.read_bytes()  # the same records framed to the same bytes


def test_tensorboards_own_framing_code_reads_our_files_and_writes_files_we_read(tmp_path):
    # TensorBoard ships a TensorFlow-free TFRecord writer and reader with a pure-Python CRC32C: an implementation
    # of the framing independent of ours and of the crc32c package.
    pytest.importorskip("tensorboard", reason="optional: TensorBoard's TFRecord code, when it is installed")
    from tensorboard.compat.tensorflow_stub import errors
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
    from tensorboard.summary.writer.record_writer import RecordWriter

    records = [tfrecord.encode_example({"i": i, "blob": bytes(range(i))}) for i in range(40)]
    ours = tmp_path / "ours.tfrecord"
    with TFRecordWriter(ours) as writer:
        for record in records:
            writer.write(record)
    reader, read_back = PyRecordReader_New(str(ours)), []
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        read_back.append(reader.record())
    reader.file_handle.close()
    assert read_back == records
    theirs = tmp_path / "theirs.tfrecord"
    with open(theirs, "wb") as handle:
        writer = RecordWriter(handle)
        for record in records:
            writer.write(record)
    assert [record["i"].tolist() for record in read_tfrecord(theirs)] == [[i] for i in range(40)]
    assert theirs.read_bytes() == ours.read_bytes()


def test_flowlearn_io_imports_without_protobuf_and_crc32c():
    import subprocess
    import sys

    code = ("import sys; sys.modules['google.protobuf'] = sys.modules['crc32c'] = None; import flowlearn.io as io; "
            "print(io.write_tfrecord.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "write_tfrecord"


def test_a_missing_protobuf_or_crc32c_names_the_extra_to_install(monkeypatch, tmp_path):
    import sys

    import flowlearn.io

    monkeypatch.delitem(sys.modules, "flowlearn.io._example_proto")
    monkeypatch.delattr(flowlearn.io, "_example_proto")  # else `from . import _example_proto` finds it there
    monkeypatch.setitem(sys.modules, "google.protobuf", None)  # an import of it now raises ImportError
    monkeypatch.setitem(sys.modules, "crc32c", None)
    tfrecord._crc32c.cache_clear()
    tfrecord._proto.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"crc32c package, which is not installed: pip install "
                                              r"'flowlearn\[tfrecord\]'"):
            write_tfrecord(tmp_path / "a.tfrecord", [{"x": 1}])
        monkeypatch.delitem(sys.modules, "crc32c")
        tfrecord._crc32c.cache_clear()
        with pytest.raises(ImportError, match=r"protobuf package, which is not installed: pip install "
                                              r"'flowlearn\[tfrecord\]'"):
            write_tfrecord(tmp_path / "a.tfrecord", [{"x": 1}])
    finally:
        tfrecord._crc32c.cache_clear()
        tfrecord._proto.cache_clear()
