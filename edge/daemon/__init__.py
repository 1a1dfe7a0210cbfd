"""The inspection daemon: config, pipeline threads, accounting, sequence counter, side services.

:mod:`.supervisor` owns one run (start, reload, drain, stop); :mod:`.pipeline` holds the bounded
queues and the frame accounting; :mod:`.acquisition` and :mod:`.stages` are the three threads;
:mod:`.sequence` keeps ``seq`` across restarts; :mod:`.services` fans daemon events out to the
side services (metrics, archive, control, systemd); :mod:`.config` is the typed YAML schema built
from every section's model. A new output beside the publisher (PLC, broker, live view) is fed from
here and lives in a package of its own.

May import every other ``edge`` sub-package except :mod:`edge.tools` and :mod:`edge.cli`.
"""
