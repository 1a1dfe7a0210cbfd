"""``edge-inspect schemas``: the JSON Schema files of the wire messages and of ``bundle.yaml``.

Whoever writes a PLC/MES bridge, a dashboard or a bundle tool in another language needs the
contracts in a form their tools read. The files are generated from the pydantic models that the
writers and readers here use (:mod:`edge.wire.schema`, :mod:`edge.model.manifest`), never written
by hand, and committed under ``docs/schemas/``; ``--check`` (run by the tests) fails when a model
changed without the files being regenerated. The schemas describe what a reader must accept:
fields added within a schema version are optional, unknown fields are allowed except where
``bundle.yaml`` refuses them.

Only click is imported at module level: the models (and, for the manifest, OpenCV) load when
the command runs, so registering it costs the other commands nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_DIR = Path("docs") / "schemas"
NAMES = ("verdict", "heartbeat", "status", "event", "bundle")


def file_name(name: str) -> str:
    """``verdict`` -> ``verdict.schema.json``."""
    return f"{name}.schema.json"


def generate() -> dict[str, str]:
    """The text of every schema file, by name, as the models define them now."""
    from pydantic import TypeAdapter

    from edge.model.manifest import BundleManifest
    from edge.wire.schema import EVENT, Heartbeat, Status, Verdict

    adapters: dict[str, tuple[str, TypeAdapter[Any]]] = {
        "verdict": ("edge.wire.schema.Verdict", TypeAdapter(Verdict)),
        "heartbeat": ("edge.wire.schema.Heartbeat", TypeAdapter(Heartbeat)),
        "status": ("edge.wire.schema.Status", TypeAdapter(Status)),
        "event": ("edge.wire.schema.Event", EVENT),
        "bundle": ("edge.model.manifest.BundleManifest", TypeAdapter(BundleManifest)),
    }
    texts = {}
    for name in NAMES:
        source, adapter = adapters[name]
        schema = {"$schema": JSON_SCHEMA_DIALECT,
                  "$comment": f"Generated from {source} by `edge-inspect schemas`; do not edit by hand.",
                  **adapter.json_schema(mode="validation")}
        if name == "event":
            schema.setdefault("title", "Event")
            schema.setdefault("description", "An event message (topic event.<station>); the event field says "
                                             "which, and the shape of detail.")
        texts[file_name(name)] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return texts


def stale_files(directory: Path) -> list[str]:
    """Names of the schema files in ``directory`` that are missing or differ from :func:`generate`."""
    stale = []
    for name, text in generate().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
              show_default=True, help="Folder of the schema files.")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 if a file is missing or differs from what the models generate.")
def schemas(out_dir: Path, check: bool) -> None:
    """Write the JSON Schema of the verdict, heartbeat, status and event messages and of bundle.yaml.

    The files are generated from the models the daemon and its tools use; commit them with any
    change to those models (--check says whether that is needed).
    """
    if check:
        stale = stale_files(out_dir)
        for name in stale:
            click.echo(f"edge-inspect schemas: {out_dir / name} is missing or out of date "
                       "(run edge-inspect schemas)", err=True)
        sys.exit(1 if stale else 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        (out_dir / name).write_text(text, encoding="utf-8")
        click.echo(str(out_dir / name))
