"""The control socket and its security: CurveZMQ keys, authenticated sockets, server and client.

:mod:`.keys` makes and reads key files, :mod:`.curve` binds and connects ZeroMQ sockets with
CurveZMQ and an allow-list of client keys (shared with the encrypted verdict stream),
:mod:`.server` answers ``status``/``trigger``/``reload``/``pause``/``resume``, and :mod:`.cli` is
``edge-inspect keygen`` and ``edge-inspect ctl``.

May import :mod:`edge.configfields` and :mod:`edge.ops`; never the daemon (it is handed the handlers).
"""

# The commands a daemon answers, as ``edge-inspect ctl`` offers them: the client refuses any other name at
# once (a typo would otherwise wait out the reply timeout), and the daemon's handlers are these names.
COMMANDS = ("status", "trigger", "reload", "pause", "resume")
