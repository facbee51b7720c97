"""The Kafka message of an envelope: a versioned msgpack map whose sample series travel as int16 bytes.

Why msgpack: the envelope is already a pydantic model, and msgpack carries its fields as they are
(map, strings, numbers, bytes) with one C call each way; a series becomes one `bytes` value, so a
night costs ~58 KB raw instead of ~400 KB of JSON text and nothing is parsed element by element.
Avro (fastavro) and Protobuf would add a second schema to keep in step with the pydantic models
(and a code generator for Protobuf) for no gain here: the message is read back by our own worker
only, and pydantic still validates every decoded envelope (the schema that matters, with the same
checks and error locations as before). The schema version is the map's `v`; a reader refuses a
version it does not know.

Layout (`v` = 2; version 1 is the previous release's JSON text of `Envelope`):

    {"v": 2, "upload_id": str, "device_id": str, "received_at": ISO 8601 str,
     "record": {<the record's fields as in JSON>, <series>: {"t": "<i2", "s": 10, "b": bytes} | None}}

A series is int16 little-endian tenths with -1 for no reading (`"t": "<i2"`, `"s": 10`, lossless for
the parsers' one-decimal values, the `respmon-sig/1` convention without its zlib: Kafka compresses
the batch with lz4), or float64 little-endian with NaN for no reading (`"t": "<f8"`) for a series
that is not whole tenths, so every value arrives exactly as it left.

`decode_envelope` reads both versions: a topic written by the previous release is still consumed.
"""

from functools import cache
from typing import Any

import msgpack
import numpy as np
from pydantic import BaseModel

from schemas.base import Record
from schemas.envelope import Envelope
from schemas.kinds import kind_named
from schemas.samples import Samples

WIRE_VERSION = 2
"""Version of the binary layout; 1 is the JSON envelope of the previous release."""
_NULL = -1
_TENTHS = "<i2"
_FLOATS = "<f8"


class WireError(ValueError):
    """A message that is neither a JSON envelope nor a binary envelope of a known version."""


@cache
def series_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a record model that hold sample series (`Samples`)."""
    return tuple(name for name, info in model.model_fields.items() if "Samples" in repr(info.annotation))


def encode_envelope(env: Envelope) -> bytes:
    """The binary (v2) message of an envelope."""
    record = env.record
    series = series_fields(type(record))
    body: dict[str, Any] = record.model_dump(mode="json", exclude=set(series))
    for name in series:
        body[name] = _pack_series(getattr(record, name))
    return msgpack.packb({"v": WIRE_VERSION, "upload_id": env.upload_id, "device_id": env.device_id,
                          "received_at": env.received_at.isoformat(), "record": body}, use_bin_type=True)


def decode_envelope(raw: bytes) -> Envelope:
    """An envelope from either message form: JSON text (v1, the previous release) or msgpack (v2).

    Raises pydantic's ValidationError for an envelope that fails its schema, WireError for bytes that
    are no envelope of a known version."""
    if raw[:1] == b"{":
        return Envelope.model_validate_json(raw)
    try:
        message = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise WireError(f"not an envelope: {type(error).__name__}") from error
    if not isinstance(message, dict) or message.get("v") != WIRE_VERSION:
        version = message.get("v") if isinstance(message, dict) else None
        raise WireError(f"unknown envelope version {version!r}")
    record = message.get("record")
    if isinstance(record, dict):
        message["record"] = _unpack_record(record)
    message.pop("v")
    return Envelope.model_validate(message)


def _pack_series(value: Samples | None) -> dict[str, Any] | None:
    if value is None:
        return None
    values = value.array
    tenths = np.rint(values * 10.0)
    gaps = np.isnan(values)
    if np.array_equal(tenths / 10.0, values, equal_nan=True) and not (tenths > np.iinfo(np.int16).max).any():
        packed = np.where(gaps, _NULL, tenths).astype(_TENTHS)
        return {"t": _TENTHS, "s": 10, "b": packed.tobytes()}
    return {"t": _FLOATS, "b": values.astype(_FLOATS).tobytes()}


def _unpack_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record's series as arrays (pydantic then checks them like any series), by the model its `kind` names."""
    try:
        model: type[Record] = kind_named(str(record.get("kind"))).model
    except KeyError:
        return record  # pydantic names the unknown kind
    for name in series_fields(model):
        packed = record.get(name)
        if isinstance(packed, dict):
            record[name] = _unpack_series(packed)
    return record


def _unpack_series(packed: dict[str, Any]) -> np.ndarray:
    data, dtype = packed.get("b"), packed.get("t")
    scale_ok = dtype != _TENTHS or packed.get("s") == 10
    if not isinstance(data, bytes) or dtype not in (_TENTHS, _FLOATS) or len(data) % np.dtype(dtype).itemsize \
            or not scale_ok:
        raise WireError("corrupt series in envelope")
    values = np.frombuffer(data, dtype=dtype)
    if dtype == _FLOATS:
        return values.astype(np.float64)
    return np.where(values == _NULL, np.nan, values / 10.0)
