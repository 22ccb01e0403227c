"""TensorFlow's ``tf.train.Example`` message classes, built at import time from descriptors written here.

No generated ``_pb2`` file and no TensorFlow: the two ``.proto`` files of ``tensorflow/core/example``
(``feature.proto`` and ``example.proto``) are spelled out below as ``FileDescriptorProto`` messages, with
TensorFlow's package name (``tensorflow``), message names and field numbers, and the installed ``protobuf``
library makes the classes. The bytes they serialize are therefore the bytes TensorFlow writes for the same
values, and TensorFlow parses ours.

The descriptors go into a pool of their own rather than protobuf's default pool: a process that also imports
TensorFlow (which registers ``tensorflow.Example`` in the default pool) must not see a conflict.

Imported by :mod:`flowlearn.io.tfrecord` only when a record is encoded or decoded, so ``import flowlearn.io``
works without protobuf (the ``tfrecord`` extra).
"""
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["BytesList", "Example", "Feature", "FeatureList", "FeatureLists", "Features", "FloatList", "Int64List",
           "SequenceExample"]

_FIELD = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _FIELD.LABEL_OPTIONAL, _FIELD.LABEL_REPEATED


def _field(message, name, number, kind, label=_OPTIONAL, type_name=None, oneof_index=None, packed=False):
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name is not None:
        field.type_name = type_name
    if oneof_index is not None:
        field.oneof_index = oneof_index
    if packed:  # proto3 packs repeated scalars anyway; TensorFlow's .proto says so explicitly, and so do we
        field.options.packed = True
    return field


def _map_field(message, name, number, value_type):
    """``map<string, value_type> name = number``: a repeated nested ``<Name>Entry`` message marked map_entry,
    which is how protoc lowers a map field (and so how it is laid out on the wire)."""
    entry = message.nested_type.add(name="".join(part.capitalize() for part in name.split("_")) + "Entry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _FIELD.TYPE_STRING)
    _field(entry, "value", 2, _FIELD.TYPE_MESSAGE, type_name=value_type)
    _field(message, name, number, _FIELD.TYPE_MESSAGE, _REPEATED, type_name=f"{message.name}.{entry.name}")


def _file(name, dependencies=()):
    return descriptor_pb2.FileDescriptorProto(name=name, package="tensorflow", syntax="proto3",
                                              dependency=list(dependencies))


def _feature_proto():
    """tensorflow/core/example/feature.proto."""
    proto = _file("tensorflow/core/example/feature.proto")
    _field(proto.message_type.add(name="BytesList"), "value", 1, _FIELD.TYPE_BYTES, _REPEATED)
    _field(proto.message_type.add(name="FloatList"), "value", 1, _FIELD.TYPE_FLOAT, _REPEATED, packed=True)
    _field(proto.message_type.add(name="Int64List"), "value", 1, _FIELD.TYPE_INT64, _REPEATED, packed=True)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (field, kind) in enumerate([("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                            ("int64_list", "Int64List")], start=1):
        _field(feature, field, number, _FIELD.TYPE_MESSAGE, type_name=f".tensorflow.{kind}", oneof_index=0)
    _map_field(proto.message_type.add(name="Features"), "feature", 1, ".tensorflow.Feature")
    _field(proto.message_type.add(name="FeatureList"), "feature", 1, _FIELD.TYPE_MESSAGE, _REPEATED,
           type_name=".tensorflow.Feature")
    _map_field(proto.message_type.add(name="FeatureLists"), "feature_list", 1, ".tensorflow.FeatureList")
    return proto


def _example_proto():
    """tensorflow/core/example/example.proto."""
    proto = _file("tensorflow/core/example/example.proto", ["tensorflow/core/example/feature.proto"])
    _field(proto.message_type.add(name="Example"), "features", 1, _FIELD.TYPE_MESSAGE,
           type_name=".tensorflow.Features")
    sequence = proto.message_type.add(name="SequenceExample")
    _field(sequence, "context", 1, _FIELD.TYPE_MESSAGE, type_name=".tensorflow.Features")
    _field(sequence, "feature_lists", 2, _FIELD.TYPE_MESSAGE, type_name=".tensorflow.FeatureLists")
    return proto


def _message_class(descriptor):
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(descriptor)
    return message_factory.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)  # protobuf < 4.22


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_feature_proto())
_POOL.Add(_example_proto())

BytesList, FloatList, Int64List, Feature, Features, FeatureList, FeatureLists, Example, SequenceExample = (
    _message_class(_POOL.FindMessageTypeByName(f"tensorflow.{name}"))
    for name in ("BytesList", "FloatList", "Int64List", "Feature", "Features", "FeatureList", "FeatureLists",
                 "Example", "SequenceExample")
)
