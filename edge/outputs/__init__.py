"""Outputs beside the ZeroMQ publisher: where verdicts go besides the verdict socket.

Each output (a PLC hand-off, the plant's broker, ...) lives in its own module or sub-package
holding its config model and its runtime class, built on :class:`~edge.outputs.base.QueuedOutput`
so that it never blocks inspection and accounts for every message it was given (delivered,
undelivered by reason, or queued). :data:`OUTPUTS` below is the explicit registry: one line per
output, naming its ``outputs.<name>`` config section and the factory that builds its runtime
objects when the section is enabled. The daemon (:mod:`edge.daemon.services`) hands every
published message to every output built from it and carries their
:meth:`~edge.outputs.base.QueuedOutput.stats` in heartbeats, the ``stopped`` event and metrics;
it never names a particular output.

May import :mod:`edge.wire`, :mod:`edge.model`, :mod:`edge.control`, :mod:`edge.ops` and
:mod:`edge.configfields`; never :mod:`edge.daemon` (it is handed what it needs in an
:class:`~edge.outputs.base.OutputContext`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from edge.outputs.base import OutboundMessage, OutputContext, OutputError, QueuedOutput
from edge.outputs.broker import BrokerConfig, create_broker_outputs
from edge.outputs.plc import PlcConfig, create_plc_outputs

OutputFactory = Callable[[Any, OutputContext], list[QueuedOutput]]

# name -> (config model of the ``outputs.<name>`` section, factory). Each config model has an
# ``enabled`` field (off by default); the factory is called only for an enabled section.
OUTPUTS: dict[str, tuple[type[BaseModel], OutputFactory]] = {
    "plc": (PlcConfig, create_plc_outputs),
    "broker": (BrokerConfig, create_broker_outputs),
}


def _outputs_config() -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (config_cls, Field(default_factory=config_cls, description=(config_cls.__doc__ or name).splitlines()[0]))
        for name, (config_cls, _) in OUTPUTS.items()
    }
    return create_model("OutputsConfig", __config__=ConfigDict(extra="forbid"),
                        __doc__="``outputs:`` where verdicts go besides the ZeroMQ socket.", **fields)


OutputsConfig = _outputs_config()


def create_outputs(config: BaseModel, context: OutputContext) -> list[QueuedOutput]:
    """The runtime outputs of every enabled section of a validated ``outputs:`` config (not started)."""
    outputs: list[QueuedOutput] = []
    for name, (_, factory) in OUTPUTS.items():
        section = getattr(config, name)
        if getattr(section, "enabled", False):
            outputs.extend(factory(section, context))
    return outputs


__all__ = ["OUTPUTS", "OutboundMessage", "OutputContext", "OutputError", "OutputsConfig", "QueuedOutput", "create_outputs"]
