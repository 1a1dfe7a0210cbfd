"""The register map: word order, widths, addresses, and the printed map a PLC programmer imports."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.daemon.config import ConfigError, load_config
from edge.outputs.plc.registermap import PLC_FIELDS, STATION_FIELDS, RegisterMap


def test_32_bit_values_follow_the_configured_word_order_and_16_bit_part_ids_leave_a_reserved_word() -> None:
    big, little = RegisterMap(word_order="big"), RegisterMap(word_order="little")
    assert big.encode_plc({"part_id": 0x12345678})[:2] == [0x1234, 0x5678]
    assert little.encode_plc({"part_id": 0x12345678})[:2] == [0x5678, 0x1234]
    assert little.decode_plc(little.encode_plc({"part_id": 70000}))["part_id"] == 70000
    narrow = RegisterMap(part_id_bits=16)
    assert narrow.encode_station({"part_id_echo": 0x1FFFF})[8:10] == [0xFFFF, 0]  # saturates at 16 bits


def test_every_station_value_round_trips_and_counters_saturate_instead_of_wrapping() -> None:
    rmap = RegisterMap()
    values = {f.name: i + 1 for i, f in enumerate(STATION_FIELDS)}
    values["score_milli"] = 2**40
    decoded = rmap.decode_station(rmap.encode_station(values))
    assert decoded == {**values, "score_milli": 2**32 - 1}


def test_plc_map_csv_lists_every_field_at_its_address(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("bundle: b\ncamera: {type: sim, source: s}\noutputs:\n  plc:\n    modbus:\n"
                      "      plc_base: 200\n      station_base: 300\n      word_order: little\n      reject_coil: 5\n")
    result = CliRunner().invoke(main, ["plc-map", "--csv", "--config", str(config)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    rmap = RegisterMap(200, 300, "little", 32, 5)
    by_name = {row["name"]: row for row in rows}
    assert set(by_name) == {f.name for f in PLC_FIELDS + STATION_FIELDS} | {"reject"}
    for name, row in by_name.items():
        if name != "reject":
            assert int(row["address"]) == rmap.address(name) and int(row["modicon"]) == 40001 + rmap.address(name)
    assert (by_name["reject"]["table"], by_name["reject"]["address"]) == ("coil", "5")
    assert "low word first" in by_name["seq"]["meaning"]
    default = json.loads(CliRunner().invoke(main, ["plc-map", "--json"]).output)
    assert {f["name"]: f["address"] for f in default["fields"]}["results_valid"] == 103


def test_overlapping_blocks_are_refused_with_the_config_line(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("bundle: b\ncamera: {type: sim, source: s}\noutputs:\n  plc:\n    modbus:\n"
                      "      plc_base: 100\n")
    with pytest.raises(ConfigError, match=r"c.yaml:5: outputs.plc.modbus: the PLC block \(100..104\) "
                                          r"and the station block \(100..125\) overlap"):
        load_config(config)
