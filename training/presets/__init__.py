"""Category presets, and how a family's settings are assembled from a preset, flags and ``--set``.

A preset is a YAML file naming a model family and the settings that suit one kind of product
(``model``, ``description``, ``config:`` for the model, ``train:`` for the trainer, and the
dataset folder names it was made for under ``categories:``, which ``edge-train-batch`` uses to
pick it), so that a plant training many categories does not retype them. The presets shipped with the project live
beside this module (``edge-train --preset bottle``); any other file is given by path. Settings
are layered: the family's defaults, then the preset, then the dedicated flags (``--backbone``,
``--input-size`` ...), then ``--set KEY=VALUE`` (``KEY`` a config or trainer field, dotted for
nested trainer fields such as ``loss.ssim`` or ``augment.rotation``; ``VALUE`` read as YAML).
A key the chosen family does not have is refused with the list of those it has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parent
PRESET_KEYS = ("model", "description", "categories", "config", "train")


@dataclass(frozen=True)
class Preset:
    """A parsed preset file."""

    name: str
    path: Path
    model: str
    description: str = ""
    categories: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)


def available_presets() -> list[str]:
    """Names of the presets shipped with the project."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str) -> Preset:
    """The preset ``name_or_path``: a shipped preset's name or a YAML file's path."""
    path = Path(name_or_path).expanduser()
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"preset {name_or_path!r}: no such file or shipped preset "
                         f"(shipped: {', '.join(available_presets())})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read preset ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        raise ValueError(f"{path}: a preset is a mapping with at least `model: <family>`")
    unknown = set(data) - set(PRESET_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown preset keys {sorted(unknown)}; known: {', '.join(PRESET_KEYS)}")
    for key in ("config", "train"):
        if not isinstance(data.get(key) or {}, dict):
            raise ValueError(f"{path}: `{key}` must be a mapping")
    categories = data.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ValueError(f"{path}: `categories` must be a list of dataset folder names")
    return Preset(name=path.stem, path=path.resolve(), model=data["model"],
                  description=str(data.get("description", "")),
                  categories=tuple(categories), config=dict(data.get("config") or {}),
                  train=dict(data.get("train") or {}))


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``["a=1", "loss.ssim=0.5"]`` -> ``{"a": 1, "loss.ssim": 0.5}`` (values parsed as YAML)."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {item!r}: value is not valid YAML ({str(exc).splitlines()[0]})") from exc
    return values


def _merge(base: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def assemble(family: str, config_keys: tuple[str, ...], train_keys: tuple[str, ...], preset: Preset | None,
             flags: Mapping[str, Any], sets: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (config, train) overrides for ``family`` from preset < flags < ``--set``.

    ``flags`` maps config keys to the values of the dedicated command-line flags that were given
    (named ``--flag-name`` in errors).
    """
    if preset is not None and preset.model != family:
        raise ValueError(f"preset {preset.name} is for --model {preset.model}, not {family}")
    config: dict[str, Any] = dict(preset.config) if preset else {}
    train: dict[str, Any] = dict(preset.train) if preset else {}
    for key in config:
        if key not in config_keys:
            raise ValueError(f"preset {preset.name if preset else ''}: {family} has no config key {key!r}")
    for key, value in flags.items():
        if key not in config_keys:
            raise ValueError(f"--{key.replace('_', '-')} does not apply to --model {family}")
        config[key] = value
    for key, value in sets.items():
        head, _, rest = key.partition(".")
        if not rest and head in config_keys:
            config[head] = value
        elif head in train_keys:
            train = _merge(train, {head: _nest(rest, value)} if rest else {head: value})
        else:
            known = ", ".join([*config_keys, *train_keys])
            raise ValueError(f"--set {key}: {family} has no such setting; known: {known}")
    return config, train


def _nest(dotted: str, value: Any) -> Any:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value
