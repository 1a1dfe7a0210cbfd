"""The ``outputs.plc:`` config section: Modbus TCP and OPC UA, checked like the rest of the config.

Kept apart from the runtime modules so that validating a config never imports pymodbus or
asyncua: those come with ``pip install 'edge-inspect[plc]'``, and a config that enables a
protocol whose library is missing is refused here, in one line that says what to install, by
``--validate-config`` and at start-up alike. The defaults are safe ones: every server listens on
127.0.0.1 (never on all interfaces unless the config says so), and OPC UA admits no anonymous
client unless ``anonymous: true`` is set.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge.configfields import resolve_path

INSTALL_HINT = "pip install 'edge-inspect[plc]'"
DEFAULT_SERVER_PORT = 5020  # 502 needs root or CAP_NET_BIND_SERVICE; the unit runs as a plain user
DEFAULT_PLC_PORT = 502


def require(module: str, what: str) -> None:
    """ValueError naming the extra to install when ``module`` cannot be imported."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{what} needs {module}, which the plain install lacks: {INSTALL_HINT}") from None


class ModbusConfig(BaseModel):
    """``outputs.plc.modbus:`` the trigger/result handshake over Modbus TCP (see docs/plc.md for the map)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["server", "client"] = Field(
        "server", description="server: the station serves the registers and the PLC polls and writes them. client: "
        "the station writes its results into the PLC's registers and reads the PLC's trigger and ack words.")
    host: str = Field("127.0.0.1", description="server: the address to listen on (127.0.0.1 unless the PLC is on "
                      "another host: then the station's address on the machine network, never 0.0.0.0 by default). "
                      "client: the PLC's address.")
    port: int | None = Field(None, ge=1, le=65535, description=f"TCP port; default {DEFAULT_SERVER_PORT} as server "
                             f"(502 needs root), {DEFAULT_PLC_PORT} as client.")
    unit_id: int = Field(1, ge=0, le=255, description="client: the PLC's unit (device) id. A server answers any.")
    plc_base: int = Field(0, ge=0, le=65535, description="First holding register of the PLC-to-station block "
                          "(part_id, trigger, ack, clear_overrun), 0-based (PDU) address.")
    station_base: int = Field(100, ge=0, le=65535, description="First holding register of the station-to-PLC "
                              "block (ready, busy, results_valid, result, ...), 0-based address.")
    word_order: Literal["big", "little"] = Field(
        "big", description="32-bit values over two registers: big = high word first (the Modbus convention), "
        "little = low word first.")
    part_id_bits: Literal[16, 32] = Field(32, description="Width of part_id and part_id_echo (two registers are "
                                          "reserved either way, so the map does not move).")
    buffer_size: int = Field(8, ge=0, le=64, description="Results that may wait behind the one presented while the "
                             "PLC has not acknowledged it. When full, the oldest waiting result is dropped and "
                             "counted and overrun is set until the PLC clears it.")
    reject_coil: int | None = Field(0, ge=0, le=65535, description="Coil pulsed for every NG or error verdict "
                                    "(server: the station's coil; client: written to the PLC); null = none.")
    reject_pulse_ms: int = Field(100, ge=1, le=60000, description="How long the reject coil stays on; an NG "
                                 "within the pulse extends it. A polling PLC must poll faster than this.")
    poll_ms: int = Field(2, ge=1, le=1000, description="client: how often the PLC's trigger and ack words are "
                         "read (a trigger waits up to this long to be seen). Results are written as soon as they "
                         "exist, not at the next poll.")
    timeout_s: float = Field(1.0, gt=0, le=30, description="client: connect and request timeout.")
    reconnect_delay_s: float = Field(0.2, gt=0, description="client: first wait before reconnecting to a lost PLC; "
                                     "doubles per failed attempt.")
    reconnect_max_delay_s: float = Field(5.0, gt=0, description="client: the reconnect wait grows up to this.")

    @model_validator(mode="after")
    def _blocks_fit(self) -> ModbusConfig:
        from edge.outputs.plc.registermap import RegisterMap  # pure Python, no pymodbus

        rmap = RegisterMap.from_config(self)
        plc = range(self.plc_base, self.plc_base + rmap.plc_size)
        station = range(self.station_base, self.station_base + rmap.station_size)
        for name, block in (("plc_base", plc), ("station_base", station)):
            if block.stop > 65536:
                raise ValueError(f"{name}: the block of {len(block)} registers runs past address 65535")
        if plc.start < station.stop and station.start < plc.stop:
            raise ValueError(f"the PLC block ({plc.start}..{plc.stop - 1}) and the station block "
                             f"({station.start}..{station.stop - 1}) overlap")
        if self.reconnect_max_delay_s < self.reconnect_delay_s:
            raise ValueError("reconnect_max_delay_s must be >= reconnect_delay_s")
        return self

    @property
    def resolved_port(self) -> int:
        """The port, with the role's default filled in."""
        if self.port is not None:
            return self.port
        return DEFAULT_SERVER_PORT if self.role == "server" else DEFAULT_PLC_PORT


class OpcuaConfig(BaseModel):
    """``outputs.plc.opcua:`` an OPC UA server with one object per station (see docs/plc.md for the nodes)."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field("opc.tcp://127.0.0.1:4840/edge-inspect/", description="Where the server listens. The "
                          "default is this machine only; name the station's address on the machine network to "
                          "serve a PLC or SCADA elsewhere.")
    namespace: str = Field("urn:edge-inspect", description="Namespace URI of the station's nodes.")
    anonymous: bool = Field(False, description="Admit clients without credentials. Off unless set here.")
    users_file: Path | None = Field(None, description="A file of 'name:password' lines (mode 600: not readable by "
                                    "group or others) whose users may log in. Relative to the config file.")
    certificate: Path | None = Field(None, description="The server's certificate (DER or PEM); with private_key it "
                                     "offers the Basic256Sha256 signed and encrypted endpoints.")
    private_key: Path | None = Field(None, description="The server certificate's private key (PEM).")
    trusted_certificates: Path | None = Field(None, description="Folder of client certificates (.der/.pem) allowed "
                                              "to log in with their certificate.")

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme != "opc.tcp" or not url.hostname:
            raise ValueError("must be opc.tcp://HOST:PORT/PATH")
        return value

    @field_validator("users_file", "certificate", "private_key", "trusted_certificates")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return resolve_path(value, info)

    @model_validator(mode="after")
    def _someone_may_log_in(self) -> OpcuaConfig:
        if not (self.anonymous or self.users_file or self.trusted_certificates):
            raise ValueError("set anonymous: true, users_file or trusted_certificates (no client could log in)")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key go together")
        if self.trusted_certificates is not None and self.certificate is None:
            raise ValueError("trusted_certificates needs the server's own certificate and private_key")
        if self.users_file is not None:
            check_users_file(self.users_file)
        return self


def check_users_file(path: Path) -> dict[str, str]:
    """The users of a ``name:password`` file; ValueError if it is missing, readable by others or malformed."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"users_file {path}: {exc.strerror or exc}") from None
    if os.name == "posix" and mode & 0o077:
        raise ValueError(f"users_file {path} is readable by group or others (chmod 600 it)")
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, password = line.partition(":")
        if not sep or not name.strip() or not password:
            raise ValueError(f"users_file {path}:{number}: expected name:password")
        users[name.strip()] = password
    if not users:
        raise ValueError(f"users_file {path} names no user")
    return users


class PlcConfig(BaseModel):
    """``outputs.plc:`` hand verdicts to a PLC over Modbus TCP and/or OPC UA (needs the plc extra)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Start the PLC outputs configured below.")
    modbus: ModbusConfig | None = Field(None, description="Modbus TCP handshake (server or client role).")
    opcua: OpcuaConfig | None = Field(None, description="OPC UA server.")
    queue_size: int = Field(256, ge=1, le=100000, description="Messages waiting for the PLC outputs' own thread; "
                            "a full queue drops and counts (queue_full). Results wait in the Modbus results "
                            "buffer, not here.")

    @model_validator(mode="after")
    def _installed(self) -> PlcConfig:
        if not self.enabled:
            return self
        if self.modbus is None and self.opcua is None:
            raise ValueError("enabled needs modbus or opcua (or both)")
        if self.modbus is not None:
            require("pymodbus", "outputs.plc.modbus")
        if self.opcua is not None:
            require("asyncua", "outputs.plc.opcua")
        return self
