"""``python -m edge``: the same as the ``edge-inspect`` console script."""

from edge.cli import main

if __name__ == "__main__":
    main(prog_name="edge-inspect")
