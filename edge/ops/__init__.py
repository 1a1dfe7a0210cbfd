"""What keeps a station operable unattended: atomic files, logs, latency, metrics, sd_notify, archive.

None of these decides a verdict. Each module is a small self-contained service the daemon starts
and feeds (:mod:`.metrics`, :mod:`.notify`, :mod:`.archive`) or a utility the rest of ``edge``
relies on (:mod:`.atomicfile`, :mod:`.logs`, :mod:`.latency`, :mod:`.overlay`: the picture of an
inspection that the archive, ``edge-eval --report`` and the viewers all draw).

May import only :mod:`edge.configfields` (the lowest layer of ``edge`` after it).
"""
