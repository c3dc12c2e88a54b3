"""Settings name the key that is wrong; secrets come from a file or systemd's credentials directory."""

import pytest

from edge.errors import EXIT_CONFIG, EdgesightError
from edge.publish.secrets import read_secret
from edge.publish.settings import HttpSettings, MqttSettings, check


def test_defaults_are_valid_and_bind_http_to_loopback():
    assert MqttSettings().problems() == [] and HttpSettings().problems() == []
    assert HttpSettings().host == "127.0.0.1"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (MqttSettings(qos_result=3), "[mqtt] qos_result must be 0, 1 or 2 (got 3)"),
        (MqttSettings(device_id="pi/kitchen"), "[mqtt] device_id may hold only letters"),
        (MqttSettings(topic_prefix="a/#"), "[mqtt] topic_prefix must be a topic without wildcards"),
        (MqttSettings(cert_file="c.pem"), "[mqtt] cert_file and key_file go together"),
        (MqttSettings(ca_file="ca.pem"), "[mqtt] tls must be true when ca_file"),
        (HttpSettings(snapshot_quality=0), "[http] snapshot_quality must be within 1..100"),
    ],
)
def test_problems_name_section_key_and_what_is_allowed(settings, message):
    section = "mqtt" if isinstance(settings, MqttSettings) else "http"
    with pytest.raises(EdgesightError) as error:
        check(settings, section)
    assert str(error.value).startswith(message) and error.value.exit_code == EXIT_CONFIG


def test_secret_from_a_file_without_its_trailing_newline(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    assert read_secret(str(tmp_path / "pw"), "mqtt_password", "[mqtt] password_file") == "s3cret"


def test_secret_from_systemd_credentials_directory(tmp_path, monkeypatch):
    (tmp_path / "http_token").write_text("tok")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_secret("", "http_token", "[http] token_file") == "tok"
    assert read_secret("", "mqtt_password", "[mqtt] password_file") is None


@pytest.mark.parametrize(("content", "fragment"), [(None, "cannot read"), ("\n", "is empty")])
def test_missing_or_empty_secret_file_is_a_config_error(tmp_path, content, fragment):
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EdgesightError) as error:
        read_secret(str(path), "mqtt_password", "[mqtt] password_file")
    assert error.value.exit_code == EXIT_CONFIG
    assert str(error.value).startswith("[mqtt] password_file: ") and fragment in str(error.value)
