"""A report as a list of blocks (headings, text, tables, figures, galleries), written as Markdown and as HTML.

The quality engineer gets ``report.md`` (for the repository, a merge request, a wiki; images
beside it in ``img/``) and ``report.html`` (one self-contained file: images embedded as data URIs,
no script, no CDN, no network) from the same blocks, so the two cannot say different things.
No Markdown library is needed: each renderer knows the five block kinds.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1360px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
img.figure{max-width:100%;border:1px solid #ddd}.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:600px}figure img{width:600px;border:1px solid #ddd}figcaption{font-size:.85em}
p.note{color:#555;font-size:.9em}
"""


def cell(value: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` decimals, NaN and None as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@dataclass
class Document:
    """Blocks in reading order; images are paths relative to the report folder."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        """A section heading."""
        self.blocks.append(("heading", text))

    def text(self, text: str, note: bool = False) -> None:
        """A paragraph (``**bold**`` allowed); ``note`` makes it small print."""
        self.blocks.append(("note" if note else "text", text))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        """A table; cells are formatted by :func:`cell`."""
        self.blocks.append(("table", (header, [[cell(v) for v in row] for row in rows])))

    def figure(self, path: str, alt: str) -> None:
        """An image, full width."""
        self.blocks.append(("figure", (path, alt)))

    def gallery(self, tiles: list[tuple[str, str]]) -> None:
        """Tiles as (image path, caption)."""
        self.blocks.append(("gallery", tiles))

    def markdown(self) -> str:
        """The report as Markdown, images linked relative to the report folder."""
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                out += [f"## {value}", ""]
            elif kind in ("text", "note"):
                out += [value, ""]
            elif kind == "table":
                header, rows = value
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "|".join("---" for _ in header) + "|")
                out += ["| " + " | ".join(row) + " |" for row in rows]
                out.append("")
            elif kind == "figure":
                out += [f"![{value[1]}]({value[0]})", ""]
            elif kind == "gallery":
                if not value:
                    out += ["(none)", ""]
                for path, caption in value:
                    out += [f"![{caption}]({path})", f"*{caption}*", ""]
        return "\n".join(out)

    def html(self, root: Path) -> str:
        """The HTML page with every image read from ``root`` and embedded."""
        esc = html.escape
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
               f"<title>{esc(self.title)}</title><style>{STYLE}</style></head><body>", f"<h1>{esc(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                out.append(f"<h2>{esc(value)}</h2>")
            elif kind == "text":
                out.append(f"<p>{_inline(value)}</p>")
            elif kind == "note":
                out.append(f'<p class="note">{_inline(value)}</p>')
            elif kind == "table":
                header, rows = value
                out.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in header) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows]
                out.append("</table>")
            elif kind == "figure":
                out.append(f'<p><img class="figure" alt="{esc(value[1])}" src="{_data_uri(root / value[0])}"></p>')
            elif kind == "gallery":
                out.append('<div class="gallery">' + ("" if value else "<p>(none)</p>"))
                for path, caption in value:
                    out.append(f'<figure><img alt="{esc(caption)}" src="{_data_uri(root / path)}">'
                               f"<figcaption>{esc(caption)}</figcaption></figure>")
                out.append("</div>")
        out.append("</body></html>")
        return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then the one Markdown mark the blocks use inline: **bold**."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def _data_uri(path: Path) -> str:
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
