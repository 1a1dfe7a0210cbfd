"""The PLC hand-off (``outputs.plc``): Modbus TCP (server or client role) and OPC UA beside the publisher.

A verdict is only useful when the machine acts on it. This package speaks the convention PLC
programmers know from vision sensors: a trigger with a part id, the result presented with the part
id echoed and ``results_valid`` set, an acknowledge, a small results buffer with an overrun bit,
a reject coil, and a documented register map (``edge-inspect plc-map``). What lives where:

- :mod:`.config` the ``outputs.plc`` section (no pymodbus or asyncua import: those are the
  ``plc`` extra, and a config that needs a missing one is refused with the pip line),
- :mod:`.registermap` the Modbus map as data, :mod:`.handshake` the state machine without I/O,
- :mod:`.modbus` the output, moved by :mod:`.modbus_server` or :mod:`.modbus_client`,
- :mod:`.opcua` the OPC UA server output, :mod:`.loop` the event-loop thread they run on,
- :mod:`.cli` the ``plc-map`` command.

May import :mod:`edge.outputs.base` and :mod:`edge.configfields`; never :mod:`edge.daemon`.
"""

from __future__ import annotations

from edge.outputs.base import OutputContext, QueuedOutput
from edge.outputs.plc.config import PlcConfig


def create_plc_outputs(config: PlcConfig, context: OutputContext) -> list[QueuedOutput]:
    """One output per configured protocol (the libraries are imported here, at start-up)."""
    outputs: list[QueuedOutput] = []
    if config.modbus is not None:
        from edge.outputs.plc.modbus import ModbusOutput

        outputs.append(ModbusOutput(config.modbus, context, config.queue_size))
    if config.opcua is not None:
        from edge.outputs.plc.opcua import OpcuaOutput

        outputs.append(OpcuaOutput(config.opcua, context, config.queue_size))
    return outputs


__all__ = ["PlcConfig", "create_plc_outputs"]
