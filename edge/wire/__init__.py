"""What goes over the wire: the verdict, heartbeat, status and event messages, publisher, subscriber.

The message modules are the contract with every consumer (our ``subscribe``, a PLC/MES bridge, a
test): the writer and the parser live together so both agree on the bytes, and both go through
the pydantic models of :mod:`.schema`, which ``edge-inspect schemas`` (:mod:`.schema_files`)
publishes as JSON Schema. :mod:`.publisher` owns the daemon's PUB socket, :mod:`.subscriber` the
``edge-inspect subscribe`` command.

May import :mod:`edge.model` (for the inspection result), :mod:`edge.control` (CurveZMQ), :mod:`edge.ops`.
"""
