"""The daemon config refuses what it does not understand and says where: key path and YAML line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from edge.cameras import CAMERAS
from edge.cli import build_overrides, main
from edge.daemon.config import ConfigError, EdgeConfig, PublishConfig, RuntimeConfig, load_config

REPO = Path(__file__).resolve().parents[4]

GOOD = """\
station: line3
bundle: bundles/bottle
camera:
  type: sim
  source: images
  fps: 2
publish:
  endpoint: tcp://127.0.0.1:5599
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path | None, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    return str(info.value)


def test_valid_config_loads_with_defaults_filled_in(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.station == "line3"
    assert config.camera.type == "sim" and config.camera.fps == 2 and config.camera.loop is False
    assert config.publish.endpoint == "tcp://127.0.0.1:5599"
    assert config.publish.send_map is False and config.publish.wait_subscriber_s == 0
    assert config.runtime.threads is None and config.log_level == "INFO"


def test_relative_paths_are_taken_from_the_config_files_folder(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.bundle == tmp_path.resolve() / "bundles" / "bottle"
    assert Path(config.camera.source) == tmp_path.resolve() / "images"


def test_unknown_key_is_named_with_its_yaml_line(tmp_path):
    path = write(tmp_path, GOOD.replace("  fps: 2\n", "  fps: 2\n  exposure_us: 500\n"))
    assert error_of(path) == f"{path}:7: camera.exposure_us: Extra inputs are not permitted"


def test_unknown_top_level_key_is_named_with_its_yaml_line(tmp_path):
    path = write(tmp_path, GOOD + "publsh_map: true\n")
    assert error_of(path) == f"{path}:9: publsh_map: Extra inputs are not permitted"


def test_bad_value_is_named_with_key_path_and_line(tmp_path):
    path = write(tmp_path, GOOD.replace("fps: 2", "fps: -1"))
    assert error_of(path) == f"{path}:6: camera.fps: Input should be greater than or equal to 0"


def test_every_bad_value_is_reported_not_only_the_first(tmp_path):
    path = write(tmp_path, GOOD.replace("fps: 2", "fps: fast").replace("tcp://127.0.0.1:5599", "http://x"))
    message = error_of(path)
    assert f"{path}:6: camera.fps:" in message
    assert f"{path}:8: publish.endpoint:" in message and "tcp://HOST:PORT" in message


def test_unknown_camera_type_lists_the_known_ones(tmp_path):
    path = write(tmp_path, GOOD.replace("type: sim", "type: gige"))
    message = error_of(path)
    assert message.startswith(f"{path}:4: camera.type: unknown type 'gige'")
    assert "sim" in message


def test_missing_required_key_is_named(tmp_path):
    path = write(tmp_path, GOOD.replace("bundle: bundles/bottle\n", ""))
    assert "bundle: Field required" in error_of(path)


def test_duplicate_key_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, GOOD + "station: line4\n")
    assert error_of(path) == f"{path}:9: station: duplicate key"


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, GOOD + "camera: [unclosed\n")
    assert error_of(path).startswith(f"{path}:")
    assert "invalid YAML" in error_of(path)


def test_command_line_override_replaces_the_file_value(tmp_path):
    path = write(tmp_path, GOOD)
    overrides, labels = build_overrides({"fps": 5.0, "loop": True, "station": "line9", "loop_unused": None})
    config = load_config(path, overrides, labels)
    assert config.camera.fps == 5.0 and config.camera.loop is True and config.station == "line9"
    assert config.camera.source.endswith("images")  # untouched values stay from the file


def test_command_line_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    path = write(tmp_path / "elsewhere", GOOD)
    overrides, labels = build_overrides({"bundle": "b2", "source": "imgs/*.png"})
    config = load_config(path, overrides, labels)
    assert config.bundle == tmp_path / "b2"
    assert config.camera.source == str(tmp_path / "imgs" / "*.png")


def test_bad_command_line_value_names_the_option(tmp_path):
    path = write(tmp_path, GOOD)
    overrides, labels = build_overrides({"publish": "udp://1.2.3.4"})
    message = error_of(path, overrides=overrides, labels=labels)
    assert message.startswith("--publish: publish.endpoint:")


def test_cli_reports_a_config_error_and_exits_2(tmp_path):
    path = write(tmp_path, GOOD.replace("fps: 2", "fps: 2\n  fsp: 3"))
    result = CliRunner().invoke(main, ["--config", str(path), "--station", "bad station"])
    assert result.exit_code == 2
    assert f"{path}:7: camera.fsp: Extra inputs are not permitted" in result.output
    assert "--station: station:" in result.output


def test_example_config_is_valid():
    config = load_config(REPO / "configs" / "sim.yaml")
    assert config.bundle == REPO / "edge" / "demo" / "bundle"
    assert config.camera.type == "sim"


def test_every_config_field_has_a_description():
    models: list[type[BaseModel]] = [EdgeConfig, PublishConfig, RuntimeConfig]
    models += [config_cls for config_cls, _ in CAMERAS.values()]
    for model in models:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
