"""CurveZMQ key files: make a key pair, read one back, read an allow-list of client keys.

The control socket can pause a production line and the verdict stream tells anyone listening
what the line makes, so both may require CurveZMQ: every peer proves it holds a secret key whose
public half the other side was given beforehand. Keys live in the czmq/pyzmq certificate format
(``NAME.key`` holds the public key and may be copied anywhere, ``NAME.key_secret`` holds both and
must stay on its machine), so keys made here work with any ZeroMQ tool and vice versa. An
allow-list is simply a folder of public ``*.key`` files. Every problem becomes a
:class:`KeyFileError` whose message is one line a technician can act on.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

import zmq
import zmq.auth

log = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
Z85_KEY_LENGTH = 40  # a 32-byte Curve25519 key in Z85 text


class KeyFileError(Exception):
    """A key file is missing, unreadable, of the wrong kind, or would be overwritten."""


def generate_keypair(directory: str | Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public) and ``NAME.key_secret`` (mode 0600) into ``directory``.

    The pair is made in a private (0700) temporary folder inside ``directory`` and moved into place,
    so the secret is never readable by others, not even between writing it and restricting it.
    Existing files are kept unless ``force``: overwriting a secret silently locks out every peer
    that was given the old public key.
    """
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise KeyFileError(f"invalid key name {name!r}: give a plain file name such as 'line3' or 'mes-bridge'")
    directory = Path(directory).expanduser()
    public_path, secret_path = directory / f"{name}{PUBLIC_SUFFIX}", directory / f"{name}{SECRET_SUFFIX}"
    existing = [str(path) for path in (public_path, secret_path) if path.exists()]
    if existing and not force:
        raise KeyFileError(f"{', '.join(existing)} already exist(s); use --force to replace (peers holding the old "
                           "public key will be locked out)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".keygen-", dir=directory))
    except OSError as exc:
        raise KeyFileError(f"cannot write keys into {directory}: {exc.strerror or exc}") from None
    try:
        made_public, made_secret = zmq.auth.create_certificates(staging, name)
        os.chmod(made_secret, 0o600)
        os.chmod(made_public, 0o644)
        os.replace(made_secret, secret_path)
        os.replace(made_public, public_path)
    except OSError as exc:
        raise KeyFileError(f"cannot write keys into {directory}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote key pair %s and %s", public_path, secret_path)
    return public_path, secret_path


def _read(path: str | Path) -> tuple[bytes, bytes | None]:
    """Public and (if present) secret key of one certificate file, checked for shape."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder, not a key file" if path.is_dir() else "no such key file"
        raise KeyFileError(f"{path}: {what}")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror or exc})") from None
    except ValueError:
        raise KeyFileError(f"{path}: not a ZeroMQ CURVE key file (no public-key line)") from None
    for label, key in (("public", public), ("secret", secret)):
        if key is not None and len(key) != Z85_KEY_LENGTH:
            raise KeyFileError(f"{path}: the {label} key is {len(key)} characters, not {Z85_KEY_LENGTH} (damaged file?)")
    return public, secret


def load_public_key(path: str | Path) -> bytes:
    """The Z85 public key in ``path`` (a ``.key`` file; a ``.key_secret`` file also holds it)."""
    public, _ = _read(path)
    return public


def load_secret_keypair(path: str | Path) -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys from a ``.key_secret`` file; warns if others may read it."""
    public, secret = _read(path)
    path = Path(path).expanduser()
    if secret is None:
        raise KeyFileError(f"{path}: has no secret-key line (a public key file?); give the NAME{SECRET_SUFFIX} file")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s: secret key file is readable by others (mode %03o); run: chmod 600 %s", path, mode, path)
    return public, secret


def load_allowed_keys(directory: str | Path) -> dict[str, bytes]:
    """Public key by file name for every ``*.key`` in ``directory`` (the allow-list), checked.

    ZeroMQ's authenticator reads the same files; reading them here first turns a damaged file into
    a clear start-up error instead of an authenticator that silently refuses everyone.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise KeyFileError(f"{directory}: allowed-clients folder not found (a folder of client public *.key files)")
    keys = {path.name: load_public_key(path) for path in sorted(directory.glob(f"*{PUBLIC_SUFFIX}"))}
    secrets = sorted(path.name for path in directory.glob(f"*{SECRET_SUFFIX}"))
    if secrets:
        log.warning("%s holds secret key file(s) %s: only public .key files belong in an allow-list; move them "
                    "back to their own machine", directory, ", ".join(secrets))
    if not keys:
        log.warning("%s holds no *.key files: no client will be allowed to connect", directory)
    return keys
