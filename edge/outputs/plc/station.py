"""What a Modbus role (server or client) may use of the output it moves words for.

The roles live in their own modules so that pymodbus is imported only when one is started; this
protocol is the whole of their view of :class:`~edge.outputs.plc.modbus.ModbusOutput`, so neither
role imports the output (and the output imports a role only when it opens).
"""

from __future__ import annotations

from typing import Protocol

from edge.outputs.plc.config import ModbusConfig
from edge.outputs.plc.registermap import RegisterMap


class StationSide(Protocol):
    """The handshake's image and the connection state, as a role sees them (event loop thread only)."""

    config: ModbusConfig
    map: RegisterMap
    reject: bool

    def set_connected(self, connected: bool, error: str | None = None) -> None:
        """The link to the PLC came up or went down (``error`` says why)."""

    def on_plc_words(self, words: list[int], baseline: bool = False) -> None:
        """The PLC block as just written (server) or read (client)."""

    def station_words(self) -> list[int]:
        """The station block as the PLC must see it now."""
