"""``edge-inspect view-bench``: placeholder."""

import click


@click.group()
def view_bench() -> None:
    """Benches of the live view."""
