"""Benches and their daemon harness: ``bench``, ``camera-bench``, ``soak``.

Each tool prints figures anyone can re-make on their own machine. They drive the real daemon as a
subprocess through :mod:`.harness` (also used by the integration tests) and read its state from
its messages and control socket, never from its log text. Nothing in the runtime imports this
package; the CLI registers its commands.

May import any other ``edge`` sub-package.
"""
