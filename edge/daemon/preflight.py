"""What start-up checks, in one place, so that ``--validate-config`` refuses exactly what start-up would.

systemd runs ``edge-inspect --validate-config`` as ``ExecStartPre=``: a config it passes that the
daemon then refuses turns into a restart loop with a traceback in the journal. So both paths call
the functions here and print the same one line (exit 2): the camera can be set up (its source
exists, its extra is installed, its producer files are there), the folders the daemon writes are
writable (state, archive), the key files load, the state directory is not locked by another
daemon, and the bundle loads and passes its self-test on the configured engine. A camera device
that is merely absent (``CameraNotFound``) is not refused: at start it is retried with the
reconnect backoff; a setting the device refuses (a feature value) stops the start with exit 2.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from edge.cameras import CameraError, check_camera
from edge.configfields import systemd_state_directory
from edge.control.curve import load_server_keys
from edge.control.keys import KeyFileError
from edge.daemon.config import EdgeConfig
from edge.daemon.statelock import StateLock, StateLockError
from edge.extras import MissingExtra
from edge.model.bundle import Bundle, BundleError, load_bundle
from edge.model.inspector import Inspector
from edge.model.selftest import run_selftest

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The daemon cannot start; the message is one line for stderr (exit code 2)."""


def state_dir_for(config: EdgeConfig) -> Path | None:
    """``state_dir`` from the config, else systemd's ``$STATE_DIRECTORY`` (its first entry), else None."""
    return config.state_dir if config.state_dir is not None else systemd_state_directory()


def check_writable_dir(path: Path, what: str) -> None:
    """Create ``path`` if needed and write (then remove) a probe file in it; StartupError naming ``what``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".edge-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StartupError(f"{what} {path}: cannot write there ({exc.strerror or exc})") from None


def preflight(config: EdgeConfig) -> Bundle:
    """Everything start-up refuses before it opens a socket: the bundle's contract and files, camera set-up,
    writable folders, key files. Returns the bundle, loaded (compiling it and its self-test come after the bind).
    """
    try:
        bundle = load_bundle(config.bundle)
    except BundleError as exc:
        raise StartupError(f"bundle: {exc}") from None
    try:
        check_camera(config.camera)
    except (CameraError, MissingExtra) as exc:
        raise StartupError(str(exc)) from None
    state_dir = state_dir_for(config)
    if state_dir is not None:
        check_writable_dir(state_dir, "state_dir")
    if config.archive.enabled and config.archive.directory is not None:
        check_writable_dir(config.archive.directory, "archive.directory")
    for section, curve in (("publish.curve", config.publish.curve),
                           ("control.curve", config.control.curve if config.control.enabled else None)):
        if curve is not None:
            try:
                load_server_keys(curve)
            except KeyFileError as exc:
                raise StartupError(f"{section}: {exc}") from None
    return bundle


def take_state_lock(config: EdgeConfig) -> StateLock | None:
    """The state directory's lock, held (None without a state directory); StartupError naming the holder."""
    state_dir = state_dir_for(config)
    if state_dir is None:
        return None
    lock = StateLock(state_dir)
    try:
        lock.acquire()
    except StateLockError as exc:
        raise StartupError(str(exc)) from None
    return lock


def load_inspector(config: EdgeConfig, bundle: Bundle | None = None) -> tuple[Bundle, Inspector, dict[str, Any] | None]:
    """Load (unless given), validate, compile and self-test the bundle named by ``config``; BundleError if it must not run."""
    bundle = bundle if bundle is not None else load_bundle(config.bundle)
    backend = None if config.runtime.backend == "auto" else config.runtime.backend
    inspector = Inspector(bundle, backend=backend, options=config.runtime.options())
    selftest = run_selftest(bundle, inspector)
    return bundle, inspector, selftest


def validate(config: EdgeConfig) -> tuple[Bundle, Inspector]:
    """``--validate-config``: every check of start-up, the lock and the bundle's self-test included; StartupError."""
    bundle = preflight(config)
    lock = take_state_lock(config)
    if lock is not None:
        lock.release()
    try:
        bundle, inspector, _ = load_inspector(config, bundle)
    except BundleError as exc:
        raise StartupError(f"bundle: {exc}") from None
    return bundle, inspector
