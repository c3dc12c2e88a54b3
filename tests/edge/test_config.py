import re
from pathlib import Path

import pytest

from edge.config import load_config, state_dir
from edge.errors import EXIT_CONFIG, EdgesightError

GOOD = """\
[source]
uri = "clip.mp4"
loop = true

[model]
path = "bundles/digits"
threads = 4
"""


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgesight.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> EdgesightError:
    with pytest.raises(EdgesightError) as error:
        load_config(config_file(tmp_path, text))
    return error.value


def test_defaults_and_paths_relative_to_the_config_file(tmp_path):
    config = load_config(config_file(tmp_path, GOOD))
    assert config.source.uri == str(tmp_path / "clip.mp4") and config.source.loop is True
    assert config.model.path == str(tmp_path / "bundles/digits") and config.model.threads == 4
    assert config.model.top_k == 3 and config.output.jsonl == "-"


def test_camera_index_and_urls_are_not_treated_as_paths(tmp_path):
    config = load_config(config_file(tmp_path, GOOD.replace('"clip.mp4"', "0")))
    assert config.source.uri == "0"
    config = load_config(config_file(tmp_path, GOOD.replace('"clip.mp4"', '"rtsp://127.0.0.1/cam"')))
    assert config.source.uri == "rtsp://127.0.0.1/cam"


def test_unknown_key_names_file_line_key_and_allowed_keys(tmp_path):
    error = error_of(tmp_path, GOOD.replace("threads = 4", "threads = 4\nthread_count = 2"))
    assert error.exit_code == EXIT_CONFIG
    assert str(error).startswith(f"{tmp_path / 'edgesight.toml'}:8: [model] thread_count is not a known key")
    assert "allowed: path, threads, top_k" in str(error)


def test_unknown_section(tmp_path):
    error = error_of(tmp_path, GOOD + "\n[mqqt]\nhost = 'x'\n")
    assert ":9: [mqqt] is not a known section" in str(error) and error.exit_code == EXIT_CONFIG
    assert "allowed: source, model, results, collect, dataloop, output, mqtt, http" in str(error)


def test_wrong_type_names_the_value(tmp_path):
    error = error_of(tmp_path, GOOD.replace("threads = 4", 'threads = "four"'))
    assert ":7: [model] threads must be an integer (got 'four')" in str(error)
    error = error_of(tmp_path, GOOD.replace("loop = true", "loop = 1"))
    assert "[source] loop must be true or false" in str(error)


def test_missing_required_section_and_key(tmp_path):
    assert "[source] section is required" in str(error_of(tmp_path, '[model]\npath = "x"\n'))
    assert "[model] needs the key 'path'" in str(error_of(tmp_path, '[source]\nuri = "x"\n[model]\nthreads = 1\n'))


def test_invalid_toml_and_missing_file(tmp_path):
    error = error_of(tmp_path, "[source\nuri=")
    assert "not valid TOML" in str(error) and error.exit_code == EXIT_CONFIG
    with pytest.raises(EdgesightError) as missing:
        load_config(tmp_path / "absent.toml")
    assert missing.value.exit_code == EXIT_CONFIG


def test_new_sections_have_documented_defaults(tmp_path):
    config = load_config(config_file(tmp_path, GOOD))
    assert config.source.timeout_s == 5.0 and config.source.reconnect_max_s == 30.0 and config.source.roi == ()
    assert config.results.threshold == 0.0 and config.results.smoothing == "none" and config.results.debounce == 1
    assert config.dataloop is None and config.collect is None  # off unless their sections are present
    assert config.model.delegate == "auto"


def test_choice_names_the_allowed_values(tmp_path):
    error = error_of(tmp_path, GOOD + '\n[results]\nsmoothing = "median"\n')
    assert ":10: [results] smoothing must be one of none, ema, majority (got 'median')" in str(error)
    assert error.exit_code == EXIT_CONFIG


def test_numbers_out_of_range_or_not_finite(tmp_path):
    error = error_of(tmp_path, GOOD + "\n[results]\nthreshold = 1.5\n")
    assert "[results] threshold must be at most 1 (got 1.5)" in str(error)
    error = error_of(tmp_path, GOOD + "\n[results]\nthreshold = nan\n")
    assert "[results] threshold must be a number (got nan)" in str(error)
    error = error_of(tmp_path, GOOD.replace("loop = true", "loop = true\ntimeout_s = 0"))
    assert ":4: [source] timeout_s must be at least 0.1 (got 0.0)" in str(error)


def test_lists_and_keys_that_go_together(tmp_path):
    error = error_of(tmp_path, GOOD.replace("loop = true", "roi = [0, 0, 10]"))
    assert "[source] roi must be [x, y, width, height]" in str(error)
    error = error_of(tmp_path, GOOD.replace("loop = true", 'roi = [0, "a", 1, 1]'))
    assert "[source] roi must be an integer (got 'a')" in str(error)
    error = error_of(tmp_path, GOOD.replace("loop = true", "width = 640"))
    assert "[source] height and width go together" in str(error)
    error = error_of(tmp_path, GOOD.replace("loop = true", 'fourcc = "MJPEG"'))
    assert "[source] fourcc must be four ASCII characters" in str(error)
    config = load_config(config_file(tmp_path, GOOD.replace("loop = true", "roi = [10, 20, 300, 200]")))
    assert config.source.roi == (10, 20, 300, 200)


def test_picamera_uri_and_state_dir_resolution(tmp_path):
    config = load_config(
        config_file(tmp_path, GOOD.replace('"clip.mp4"', '"picamera2:1"') + '\n[collect]\nstate_dir = "state"\n')
    )
    assert config.source.uri == "picamera2:1" and state_dir(config) == tmp_path / "state"


def test_state_dir_defaults_to_systemds_then_the_users_state_folder(tmp_path, monkeypatch):
    config = load_config(config_file(tmp_path, GOOD))
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edgesight")
    assert state_dir(config) == Path("/var/lib/edgesight")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir(config) == tmp_path / "xdg" / "edgesight"


def test_a_config_without_a_model_collects(tmp_path):
    config = load_config(config_file(tmp_path, '[source]\nuri = "0"\n[collect]\ninterval_s = 5\n'))
    assert config.model is None and config.collect is not None and config.collect.interval_s == 5


def test_the_old_data_loop_folder_says_where_its_job_went(tmp_path):
    error = error_of(tmp_path, GOOD + '\n[dataloop]\ndir = "review"\n')
    assert error.exit_code == EXIT_CONFIG
    assert ":10: [dataloop] dir is gone: the data loop's frames go to the inbox under [collect] state_dir" in str(error)


PACKAGED = Path(__file__).resolve().parents[2] / "systemd" / "edgesight.toml"


def test_the_packaged_config_loads_and_every_commented_key_is_real(tmp_path):
    config = load_config(PACKAGED)
    assert config.source.uri == "picamera2" and config.model.path == "/var/lib/edgesight/bundles/current"
    assert config.http is not None and config.http.host == "127.0.0.1" and config.output.jsonl == ""
    # Uncommenting every documented key (and the [mqtt] section) must still give a valid config.
    uncommented = re.sub(r"(?m)^# (\[?[a-z_]+\]?( = .*)?)$", r"\1", PACKAGED.read_text())
    (tmp_path / "all.toml").write_text(uncommented)
    everything = load_config(tmp_path / "all.toml")
    assert everything.mqtt is not None and everything.mqtt.host == "broker.lan"
    assert everything.dataloop is not None and everything.collect is not None
    assert state_dir(everything) == Path("/var/lib/edgesight")


def test_publishing_sections_are_validated_with_the_line(tmp_path):
    error = error_of(tmp_path, GOOD + '[mqtt]\nhost = "127.0.0.1"\nqos_state = 3\n')
    assert error.exit_code == EXIT_CONFIG and ":10: [mqtt] qos_state must be 0, 1 or 2 (got 3)" in str(error)
    path = config_file(tmp_path, GOOD + '[http]\nport = 8080\ntoken_file = "token"\n')
    assert load_config(path).http.token_file == str(tmp_path / "token")
    assert load_config(config_file(tmp_path, GOOD)).mqtt is None
