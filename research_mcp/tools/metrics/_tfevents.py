"""TensorBoard event files, read whole: every scalar of every step (TensorBoard's accumulator keeps a sample).

The framing is TFRecord: `uint64 length, uint32 masked CRC-32C of the length, data, uint32 masked CRC of the data`.
The records are walked over a memory map here and each is parsed with TensorBoard's own `Event` protobuf class
(`tensorboard.compat.proto.event_pb2`, the C `upb` parser); TensorBoard's own loader does the same framing in Python
and checks every data CRC in pure Python, byte by byte, which is what makes it slow. Here the length's CRC is
checked (so a corrupt length is caught before it is followed) and the data is checked by the protobuf parse. A
half-written last record (the writer is still running) ends the read with a warning, as does a corrupt record.

Scalars are `simple_value` (TF1, PyTorch's SummaryWriter, Lightning) or a 0-d float tensor (TF2 `tf.summary.scalar`).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

from research_mcp.tools.metrics._records import TIME_BUDGET_NOTE, Buffer, FileMetrics, Limits, lib

__all__ = ["read_tfevents"]

_HEADER = struct.Struct("<QI")
_DT_FLOAT, _DT_DOUBLE = 1, 2


def read_tfevents(path: Path, rel: str, limits: Limits) -> FileMetrics:
    out = FileMetrics(rel, "tensorboard")
    try:
        decode_error: Any = lib("google.protobuf.message").DecodeError
        from_string: Any = lib("tensorboard.compat.proto.event_pb2").Event.FromString
        masked_crc32c: Any = lib("tensorboard.compat.tensorflow_stub.pywrap_tensorflow").masked_crc32c
    except ImportError:
        out.warnings.append(f"{rel}: TensorBoard event file not read: install the tensorboard package")
        return out
    size = path.stat().st_size
    if size == 0:
        out.warnings.append(f"{rel}: empty event file")
        return out
    buffer = Buffer(out, limits.max_points)
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        pos = records = 0
        while pos < size:
            records += 1
            if records % 4096 == 0 and limits.over():
                out.warnings.append(f"{rel}: {TIME_BUDGET_NOTE} (at byte {pos})")
                break
            if size - pos < _HEADER.size:
                out.warnings.append(f"{rel}: the last record is cut short at byte {pos} (still being written?)")
                break
            length, length_crc = _HEADER.unpack_from(view, pos)
            if masked_crc32c(view[pos : pos + 8]) != length_crc:
                out.warnings.append(f"{rel}: corrupt record header at byte {pos}; the rest of the file is not read")
                break
            start = pos + _HEADER.size
            end = start + length
            if end + 4 > size:
                out.warnings.append(f"{rel}: the last record is cut short at byte {pos} (still being written?)")
                break
            try:
                event = from_string(view[start:end])
            except decode_error:
                out.warnings.append(f"{rel}: corrupt record at byte {pos}; the rest of the file is not read")
                break
            pos = end + 4
            if not event.HasField("summary"):
                continue
            step = float(event.step)
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    buffer.add(value.tag, step, value.simple_value)
                elif kind == "tensor":
                    scalar = _scalar(value.tensor)
                    if scalar is not None:
                        buffer.add(value.tag, step, scalar)
    buffer.flush()
    return out


def _scalar(tensor: Any) -> float | None:
    dtype: int = tensor.dtype
    if dtype not in (_DT_FLOAT, _DT_DOUBLE) or len(tensor.tensor_shape.dim):
        return None
    values = tensor.float_val if dtype == _DT_FLOAT else tensor.double_val
    if len(values):
        return float(values[0])
    content: bytes = tensor.tensor_content
    fmt = "<f" if dtype == _DT_FLOAT else "<d"
    if len(content) != struct.calcsize(fmt):
        return None
    return float(struct.unpack(fmt, content)[0])
