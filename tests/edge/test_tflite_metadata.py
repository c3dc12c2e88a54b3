"""TFLite metadata: a model carrying labels and normalization in its own file runs without labels.txt.

The test writes the metadata as the TFLite metadata writer does, following metadata_schema.fbs
(ModelMetadata in a ``TFLITE_METADATA`` buffer, labels in a zip appended to the model).
"""

import io
import shutil
import zipfile

import numpy as np
import pytest

from edge.classifier import load_classifier
from edge.config import ModelConfig
from edge.tflite_metadata import read_metadata

pytestmark = pytest.mark.slow


def _vector(builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _floats(builder, values: list[float]) -> int:
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(value)
    return builder.EndVector()


def model_metadata(label_file: str, mean: list[float], std: list[float]) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(512)
    mean_v, std_v = _floats(b, mean), _floats(b, std)
    b.StartObject(2)  # NormalizationOptions {mean, std}
    b.PrependUOffsetTRelativeSlot(0, mean_v, 0)
    b.PrependUOffsetTRelativeSlot(1, std_v, 0)
    normalization = b.EndObject()
    b.StartObject(2)  # ProcessUnit {options_type, options}
    b.PrependUint8Slot(0, 1, 0)  # NormalizationOptions
    b.PrependUOffsetTRelativeSlot(1, normalization, 0)
    units = _vector(b, [b.EndObject()])
    name = b.CreateString("image")
    b.StartObject(7)  # TensorMetadata {name, description, dimension_names, content, process_units, ...}
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    b.PrependUOffsetTRelativeSlot(4, units, 0)
    input_tensor = b.EndObject()
    file_name = b.CreateString(label_file)
    b.StartObject(5)  # AssociatedFile {name, description, type, locale, version}
    b.PrependUOffsetTRelativeSlot(0, file_name, 0)
    b.PrependInt8Slot(2, 2, 0)  # TENSOR_AXIS_LABELS
    files = _vector(b, [b.EndObject()])
    b.StartObject(7)
    b.PrependUOffsetTRelativeSlot(6, files, 0)  # TensorMetadata.associated_files
    output_tensor = b.EndObject()
    inputs, outputs = _vector(b, [input_tensor]), _vector(b, [output_tensor])
    b.StartObject(9)  # SubGraphMetadata {name, description, input_tensor_metadata, output_tensor_metadata, ...}
    b.PrependUOffsetTRelativeSlot(2, inputs, 0)
    b.PrependUOffsetTRelativeSlot(3, outputs, 0)
    subgraphs = _vector(b, [b.EndObject()])
    model_name = b.CreateString("digits")
    b.StartObject(8)  # ModelMetadata {name, description, version, subgraph_metadata, ...}
    b.PrependUOffsetTRelativeSlot(0, model_name, 0)
    b.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    b.Finish(b.EndObject(), file_identifier=b"M001")
    return bytes(b.Output())


def with_metadata(model: bytes, metadata: bytes, files: dict[str, str]) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, np.uint8)
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "TFLITE_METADATA", len(tree.buffers) - 1
    tree.metadata = [*(tree.metadata or []), entry]
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return bytes(builder.Output()) + archive.getvalue()


def test_labels_and_normalization_come_from_the_model_file(digits_tflite, digits_dir, tmp_path):
    labels = [f"digit-{i}" for i in range(10)]
    model = tmp_path / "digits_metadata.tflite"  # no labels.txt beside it
    metadata = model_metadata("labels.txt", mean=[0.0], std=[1.0])
    model.write_bytes(with_metadata(digits_tflite["float32"].read_bytes(), metadata, {"labels.txt": "\n".join(labels)}))
    found = read_metadata(model)
    assert found.labels == tuple(labels) and found.mean == (0.0,) and found.std == (1.0,)
    classifier = load_classifier(ModelConfig(path=str(model)))
    assert classifier.manifest.labels == tuple(labels)
    assert classifier.manifest.preprocess.mean == (0.0,)  # not the float default of 127.5
    image = shutil.copy(sorted((digits_dir / "8").iterdir())[0], tmp_path / "eight.png")
    from edge.images import read_image

    assert classifier.classify(read_image(image)).label == "digit-8"


def test_models_without_metadata_read_as_none(digits_tflite):
    assert read_metadata(digits_tflite["int8"]) is None
