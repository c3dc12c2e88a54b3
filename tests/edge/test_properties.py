"""Property tests: no input makes the config parser or the manifest reader fail with anything but a
clean ``EdgesightError`` carrying the documented exit code."""

import dataclasses
import json
import math
import string
import typing

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bundle import manifest_from_dict, manifest_to_dict
from edge.config import Config, load_config
from edge.errors import EXIT_CONFIG, EXIT_DATA, EdgesightError
from tests.helpers import manifest

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=12).filter(lambda s: "\x00" not in s)
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("abc"), inner, max_size=2),
    max_leaves=6,
)
SECTION_TYPES = [t for hint in typing.get_type_hints(Config).values() for t in typing.get_args(hint) or (hint,)]
KNOWN_KEYS = sorted({f.name for t in SECTION_TYPES if dataclasses.is_dataclass(t) for f in dataclasses.fields(t)})
config_keys = st.sampled_from(KNOWN_KEYS) | st.text(string.ascii_lowercase + "_", min_size=1, max_size=8)
sections = st.sampled_from([*Config.__dataclass_fields__, "mqqt", "other"])
config_documents = st.dictionaries(sections, st.dictionaries(config_keys, toml_values, max_size=6), max_size=5)


def render(document: dict) -> str:
    return "".join(
        f"[{name}]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in table.items())
        for name, table in document.items()
    )


@SETTINGS
@given(text=st.text(max_size=200))
def test_any_text_is_a_config_or_a_config_error(tmp_path, text):
    path = tmp_path / "edgesight.toml"
    path.write_text(text)
    try:
        load_config(path)
    except EdgesightError as e:
        assert e.exit_code == EXIT_CONFIG and "\n" not in str(e).strip()


@SETTINGS
@given(document=config_documents)
def test_any_toml_document_is_a_config_or_a_config_error(tmp_path, document):
    path = tmp_path / "edgesight.toml"
    path.write_text(render(document))
    try:
        config = load_config(path)
    except EdgesightError as e:
        assert e.exit_code == EXIT_CONFIG and str(e).startswith(str(path))
    else:
        assert isinstance(config, Config) and config.source.uri


@SETTINGS
@given(data=json_values)
def test_any_json_is_a_manifest_or_a_data_error(data):
    try:
        manifest_from_dict(data, "manifest.json")
    except EdgesightError as e:
        assert e.exit_code == EXIT_DATA and str(e).startswith("manifest.json")


def paths(data, prefix=()):
    """Every key path into a nested dict/list."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from paths(value, (*prefix, index))


VALID = json.loads(json.dumps(manifest_to_dict(manifest())))
VALID_PATHS = [p for p in paths(VALID) if p]


@SETTINGS
@given(where=st.sampled_from(VALID_PATHS), value=json_values)
def test_a_valid_manifest_with_one_value_replaced_is_read_or_refused_cleanly(where, value):
    data = json.loads(json.dumps(VALID))
    target = data
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    try:
        manifest_from_dict(data, "manifest.json")
    except EdgesightError as e:
        assert e.exit_code == EXIT_DATA
