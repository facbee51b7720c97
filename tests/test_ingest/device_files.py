"""Device files built from their documented layouts (../shared/formats.md), for tests and benchmarks.

No real Contec `.SpO2` file or O2Ring binary with its night summary may be redistributed here, so the
tests write them from the layout, including the broken variants a parser must refuse.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import datetime

CONTEC_OFFSET = 856
"""Header offset of the real file described in formats.md."""


def contec_spo2(start: datetime, samples: Sequence[tuple[int, int]], *, offset: int = CONTEC_OFFSET,
                count: int | None = None, device_name: str = "BLE", fields: Sequence[int] | None = None) -> bytes:
    """A Contec SpO2 Assistant `.SpO2` file: u16 header offset, a UTF-16LE device name inside the header,
    at offset + 200 seven u32 (start year..second, sample count), then (SpO2, pulse) byte pairs.
    `count` overrides the sample count written (a wrong count); `fields` the six date fields."""
    head = bytearray(offset + 228)
    struct.pack_into("<H", head, 0, offset)
    name = device_name.encode("utf-16-le")
    head[64 : 64 + len(name)] = name
    date_fields = list(fields) if fields is not None else [start.year, start.month, start.day, start.hour,
                                                           start.minute, start.second]
    struct.pack_into("<7I", head, offset + 200, *date_fields, len(samples) if count is None else count)
    return bytes(head) + b"".join(struct.pack("<BB", s, p) for s, p in samples)


def o2ring_bin(start: datetime, samples: Sequence[tuple[int, int]], *, mean: int = 0, lowest: int = 0,
               drops3: int = 0, drops4: int = 0, t90_s: int = 0, score10: int = 0) -> bytes:
    """An O2Ring binary file: the 40-byte header with the ring's night summary, then 5-byte records
    (u8 SpO2, u16 pulse, u8 motion, u8 flag); (0xFF, 0xFFFF) = invalid sample. A zero `mean` is a ring
    that wrote no summary."""
    duration = 4 * len(samples)
    size = 40 + 5 * len(samples)
    head = struct.pack("<HHBBBBBHHHHBBBBBHBB", 3, start.year, start.month, start.day, start.hour, start.minute,
                       start.second, size & 0xFFFF, size >> 16, duration & 0xFFFF, duration >> 16, mean, lowest,
                       drops3, drops4, 0, t90_s, 0, score10).ljust(40, b"\0")
    return head + b"".join(struct.pack("<BHBB", s, p, 0, 0) for s, p in samples)
