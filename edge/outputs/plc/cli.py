"""``edge-inspect plc-map``: the Modbus register map, for the PLC programmer to read or import.

The map a station serves depends on its config (base addresses, word order, part-id width, the
reject coil), so the command prints it from the same :class:`~edge.outputs.plc.registermap.RegisterMap`
the server and client use, for the given config or for the defaults. CSV and JSON are meant for
import into PLC tools and spreadsheets; the plain table for a terminal. Only click is imported
at start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Daemon config whose outputs.plc.modbus section sets the addresses (default: the defaults).")
@click.option("--json", "as_json", is_flag=True, help="Print the map as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the map as CSV (name, direction, table, address, "
              "modicon, registers, type, meaning).")
def plc_map(config_path: Path | None, as_json: bool, as_csv: bool) -> None:
    """Print the Modbus register map: addresses (0-based and 4xxxx), types, directions and meanings.

    PLC> rows are written by the PLC (trigger, part_id, ack, clear_overrun), >PLC rows by the
    station. The handshake is described in docs/plc.md.
    """
    from edge.outputs.plc.config import ModbusConfig
    from edge.outputs.plc.registermap import RegisterMap

    if as_json and as_csv:
        click.echo("edge-inspect plc-map: give --json or --csv, not both", err=True)
        sys.exit(2)
    modbus = ModbusConfig.model_validate({})
    if config_path is not None:
        modbus = _modbus_section(config_path)
    rmap = RegisterMap.from_config(modbus)
    click.echo(rmap.to_json() if as_json else rmap.to_csv() if as_csv else rmap.to_table(), nl=as_json)


def _modbus_section(path: Path) -> Any:
    """The ``outputs.plc.modbus`` section of a daemon config, validated (exit 2 with one line if it is not).

    Only that section is read (``--validate-config`` checks the whole file): this package does not
    import the daemon's config loader.
    """
    import yaml
    from pydantic import ValidationError

    from edge.outputs.plc.config import ModbusConfig

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        click.echo(f"edge-inspect plc-map: {path}: {exc}", err=True)
        sys.exit(2)
    section = ((data.get("outputs") or {}).get("plc") or {}).get("modbus") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        click.echo(f"edge-inspect plc-map: {path} has no outputs.plc.modbus section", err=True)
        sys.exit(2)
    try:
        return ModbusConfig.model_validate(section)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        click.echo(f"edge-inspect plc-map: {path}: outputs.plc.modbus{'.' + where if where else ''}: {first['msg']}",
                   err=True)
        sys.exit(2)
