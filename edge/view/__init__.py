"""The operator's live view: ``edge-inspect view``, a web page per station fed by the verdict stream.

Someone standing at the line wants to see what the camera sees, whether the last part was OK or
NG and where the defect is, how many parts went through, and whether the station is alive. This
is a companion process, never a daemon output: it subscribes to one or more stations' PUB
sockets like any other consumer, so a slow or absent browser, or a dead view process, costs
inspection nothing beyond its PUB socket. :mod:`.state` turns the messages into what a page
shows (pure Python, testable without a web server), :mod:`.source` receives them from ZeroMQ,
:mod:`.server` serves the pages and one WebSocket per page with latest-only buffering per client
(a slow client skips updates instead of queueing them), and ``static/`` holds the HTML, JS and CSS
as package data: the plant network has no internet, so nothing is fetched from a CDN and there
is no build step.

The web server (aiohttp) is the ``view`` extra: a plain edge install does not need it, and only
:mod:`.server` imports it. May import :mod:`edge.wire`, :mod:`edge.control` (CurveZMQ client keys),
:mod:`edge.ops` and :mod:`edge.configfields`; never :mod:`edge.daemon` or :mod:`edge.model` (the
view process loads no model and no OpenCV).
"""
