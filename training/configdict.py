"""Frozen config dataclasses to and from the plain dicts stored in ``run.yaml`` and checkpoints.

Every family's config, the augmentation and the trainer settings are frozen dataclasses whose
sequence fields are tuples (so configs compare and hash); ``run.yaml`` holds them as YAML lists,
and a key a dataclass does not have is refused with the keys it does have, never ignored (a typo
in a preset or a ``--set`` would otherwise train with the default silently).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any


def plain(config: Any) -> dict[str, Any]:
    """``asdict(config)`` with its tuple fields as lists (nested dataclasses as ``asdict`` leaves them)."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()}


def known_keys(data: Mapping[str, Any], kind: type, label: str) -> dict[str, Any]:
    """``data`` as a dict, or ``ValueError`` naming the keys ``kind`` (a dataclass) does not have."""
    names = [f.name for f in fields(kind)]
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"{label}: unknown keys {sorted(unknown)}; known: {', '.join(names)}")
    return dict(data)
