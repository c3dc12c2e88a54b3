"""Standard TFLite model metadata: labels and input normalization read from the model file itself.

The metadata is a ``ModelMetadata`` flatbuffer (tensorflow/lite/schema/metadata_schema.fbs) stored in
a model buffer named ``TFLITE_METADATA``; associated files such as the labels are a zip archive
appended to the model. This reads just those few fields with a small flatbuffer walker, so the
device needs neither TensorFlow nor tflite-support.
"""

import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

METADATA_NAME = "TFLITE_METADATA"
TENSOR_AXIS_LABELS = 2  # AssociatedFileType
NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union member

# Field slots, in declaration order of the schemas.
MODEL_BUFFERS, MODEL_METADATA = 4, 6  # tflite Model
METADATA_NAME_SLOT, METADATA_BUFFER = 0, 1  # tflite Metadata
BUFFER_DATA = 0  # tflite Buffer
SUBGRAPH_METADATA = 3  # ModelMetadata
INPUT_TENSORS, OUTPUT_TENSORS = 2, 3  # SubGraphMetadata
PROCESS_UNITS, TENSOR_FILES = 4, 6  # TensorMetadata
OPTIONS_TYPE, OPTIONS = 0, 1  # ProcessUnit (a union takes two slots)
NORM_MEAN, NORM_STD = 0, 1  # NormalizationOptions
FILE_NAME, FILE_TYPE = 0, 2  # AssociatedFile


@dataclass(frozen=True)
class ModelMetadata:
    labels: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


class _Table:
    """A flatbuffer table: fields found through its vtable; absent fields read as None."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _offset(self, slot: int) -> int:
        entry = 4 + 2 * slot
        return struct.unpack_from("<H", self.buf, self.vtable + entry)[0] if entry < self.vtable_size else 0

    def _indirect(self, slot: int) -> int | None:
        offset = self._offset(slot)
        if not offset:
            return None
        at = self.pos + offset
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def scalar(self, slot: int, fmt: str, default: int = 0) -> int:
        offset = self._offset(slot)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + offset)[0] if offset else default

    def table(self, slot: int) -> "_Table | None":
        at = self._indirect(slot)
        return None if at is None else _Table(self.buf, at)

    def _vector(self, slot: int) -> tuple[int, int]:
        at = self._indirect(slot)
        if at is None:
            return 0, 0
        return at + 4, struct.unpack_from("<I", self.buf, at)[0]

    def string(self, slot: int) -> str:
        start, length = self._vector(slot)
        return self.buf[start : start + length].decode("utf-8", "replace")

    def bytes(self, slot: int) -> bytes:
        start, length = self._vector(slot)
        return self.buf[start : start + length]

    def floats(self, slot: int) -> tuple[float, ...]:
        start, length = self._vector(slot)
        return struct.unpack_from(f"<{length}f", self.buf, start) if length else ()

    def tables(self, slot: int) -> list["_Table"]:
        start, length = self._vector(slot)
        out = []
        for i in range(length):
            at = start + 4 * i
            out.append(_Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0]))
        return out


def _root(buf: bytes) -> _Table:
    return _Table(buf, struct.unpack_from("<I", buf, 0)[0])


def metadata_buffer(model: bytes) -> bytes | None:
    """The raw ``ModelMetadata`` flatbuffer inside a .tflite, or None."""
    root = _root(model)
    buffers = root.tables(MODEL_BUFFERS)
    for entry in root.tables(MODEL_METADATA):
        if entry.string(METADATA_NAME_SLOT) == METADATA_NAME:
            index = entry.scalar(METADATA_BUFFER, "I")
            return buffers[index].bytes(BUFFER_DATA) if index < len(buffers) else None
    return None


def read_metadata(path: Path) -> ModelMetadata | None:
    """Labels and normalization from a model's metadata; None when it has none or it is unreadable."""
    data = Path(path).read_bytes()
    try:
        raw = metadata_buffer(data)
        if raw is None:
            return None
        subgraphs = _root(raw).tables(SUBGRAPH_METADATA)
        if not subgraphs:
            return None
        inputs, outputs = subgraphs[0].tables(INPUT_TENSORS), subgraphs[0].tables(OUTPUT_TENSORS)
        mean, std = _normalization(inputs[0]) if inputs else ((), ())
        label_file = _label_file(outputs[0]) if outputs else None
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        log.warning("%s: unreadable TFLite metadata (%s); ignoring it", path, e)
        return None
    labels: tuple[str, ...] = ()
    if label_file:
        import zipfile  # only for a model that packs its labels: the daemon need not hold it otherwise

        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                text = archive.read(label_file).decode("utf-8")
            labels = tuple(line.strip() for line in text.splitlines() if line.strip())
        except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as e:
            log.warning("%s: metadata names %s, but it is not packed in the model (%s)", path, label_file, e)
    return ModelMetadata(labels=labels, mean=mean, std=std)


def _normalization(tensor: _Table) -> tuple[tuple[float, ...], tuple[float, ...]]:
    for unit in tensor.tables(PROCESS_UNITS):
        if unit.scalar(OPTIONS_TYPE, "B") == NORMALIZATION_OPTIONS:
            options = unit.table(OPTIONS)
            if options is not None:
                return options.floats(NORM_MEAN), options.floats(NORM_STD)
    return (), ()


def _label_file(tensor: _Table) -> str | None:
    for entry in tensor.tables(TENSOR_FILES):
        if entry.scalar(FILE_TYPE, "b") == TENSOR_AXIS_LABELS:
            return entry.string(FILE_NAME)
    return None
