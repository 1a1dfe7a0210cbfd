"""Key files: made in ZeroMQ's certificate format, secrets private, problems reported in one line."""

from __future__ import annotations

import logging
import stat

import pytest
import zmq.auth

from edge.control.keys import (
    KeyFileError,
    generate_keypair,
    load_allowed_keys,
    load_public_key,
    load_secret_keypair,
)


def test_generated_pair_reads_back_with_pyzmq_and_the_secret_is_private(tmp_path):
    public_path, secret_path = generate_keypair(tmp_path / "keys", "line3")

    assert (public_path.name, secret_path.name) == ("line3.key", "line3.key_secret")
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    public, secret = zmq.auth.load_certificate(secret_path)
    assert zmq.auth.load_certificate(public_path) == (public, None)
    assert load_public_key(public_path) == public
    assert load_secret_keypair(secret_path) == (public, secret)
    assert zmq.curve_public(secret) == public  # the two halves belong together
    assert sorted(p.name for p in public_path.parent.iterdir()) == ["line3.key", "line3.key_secret"]


def test_existing_keys_are_kept_unless_forced(tmp_path):
    public_path, secret_path = generate_keypair(tmp_path, "line3")
    first = load_secret_keypair(secret_path)

    with pytest.raises(KeyFileError, match="already exist.*--force"):
        generate_keypair(tmp_path, "line3")
    assert load_secret_keypair(secret_path) == first

    generate_keypair(tmp_path, "line3", force=True)
    assert load_secret_keypair(secret_path) != first
    assert load_public_key(public_path) == load_secret_keypair(secret_path)[0]


@pytest.mark.parametrize("name", ["", "..", "sub/line3"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path, name):
    with pytest.raises(KeyFileError, match="invalid key name"):
        generate_keypair(tmp_path, name)


def test_missing_key_file_is_one_clear_line(tmp_path):
    with pytest.raises(KeyFileError, match="no such key file") as info:
        load_public_key(tmp_path / "nope.key")
    assert "\n" not in str(info.value)


def test_a_file_without_a_public_key_is_not_a_key_file(tmp_path):
    path = tmp_path / "notes.key"
    path.write_text("hello\n")
    with pytest.raises(KeyFileError, match="not a ZeroMQ CURVE key file"):
        load_public_key(path)


def test_a_public_key_file_given_as_secret_says_which_file_to_give(tmp_path):
    public_path, _ = generate_keypair(tmp_path, "client")
    with pytest.raises(KeyFileError, match=r"no secret-key line.*key_secret"):
        load_secret_keypair(public_path)


def test_a_truncated_key_is_reported_as_damaged(tmp_path):
    public_path, _ = generate_keypair(tmp_path, "client")
    public = load_public_key(public_path).decode()
    public_path.write_text(public_path.read_text().replace(public, public[:-3]))
    with pytest.raises(KeyFileError, match="damaged"):
        load_public_key(public_path)


def test_a_secret_readable_by_others_loads_with_a_warning(tmp_path, caplog):
    _, secret_path = generate_keypair(tmp_path, "line3")
    secret_path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="edge.control.keys"):
        load_secret_keypair(secret_path)
    assert "readable by others" in caplog.text and "chmod 600" in caplog.text


def test_allow_list_is_every_public_key_in_the_folder(tmp_path, caplog):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    keys = {}
    for name in ("mes-bridge", "laptop"):
        public_path, _ = generate_keypair(tmp_path, name)
        (allowed / public_path.name).write_bytes(public_path.read_bytes())
        keys[public_path.name] = load_public_key(public_path)
    generate_keypair(allowed, "misplaced")  # a secret in the allow-list folder gets a warning
    keys["misplaced.key"] = load_public_key(allowed / "misplaced.key")

    with caplog.at_level(logging.WARNING, logger="edge.control.keys"):
        assert load_allowed_keys(allowed) == keys
    assert "misplaced.key_secret" in caplog.text


def test_allow_list_folder_must_exist(tmp_path):
    with pytest.raises(KeyFileError, match="allowed-clients folder not found"):
        load_allowed_keys(tmp_path / "absent")


def test_empty_allow_list_warns_that_nobody_can_connect(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="edge.control.keys"):
        assert load_allowed_keys(tmp_path) == {}
    assert "no client will be allowed" in caplog.text
