"""Outputs beside the ZeroMQ publisher: where verdicts go besides the verdict socket.

Each output (a PLC hand-off, the plant's broker, ...) lives in its own module or sub-package
holding its config model and its runtime class, built on :class:`~edge.outputs.base.QueuedOutput`
so that it never blocks inspection and accounts for every message it was given (delivered,
undelivered by reason, or queued). The daemon (:mod:`edge.daemon.services`) hands every published
message to every enabled output and carries their :meth:`~edge.outputs.base.QueuedOutput.stats`
in heartbeats and metrics; it never names a particular output.

May import :mod:`edge.wire`, :mod:`edge.model`, :mod:`edge.control`, :mod:`edge.ops` and
:mod:`edge.configfields`; never :mod:`edge.daemon` (it is handed what it needs).
"""
