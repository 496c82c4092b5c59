"""Static HTML reports: one self-contained folder per run, an `index.html` and its PNG figures.

Pages are plain HTML with a small inline stylesheet and no scripts, so they open from disk in any
browser; every figure is a PNG beside the page, referenced by a relative path. Figures are drawn by
matplotlib (Agg backend, imported only here).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1280px; padding: 0 16px; color: #1d2125; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.6em;
     border-bottom: 1px solid #d8dde2; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #d8dde2; padding: 3px 8px; text-align: right; }
th { background: #f1f4f7; } td.l, th.l { text-align: left; }
figure { display: inline-block; margin: 6px 10px 10px 0; vertical-align: top; max-width: 100%; }
figure img { border: 1px solid #d8dde2; max-width: 100%; image-rendering: auto; }
figcaption { font-size: 0.85em; color: #4b5560; max-width: 640px; }
.note { color: #7a4b00; background: #fff7e6; border: 1px solid #f0d9a8; padding: 6px 10px; }
.muted { color: #68737d; font-size: 0.9em; } code { background: #f1f4f7; padding: 0 3px; }
img.pixel { image-rendering: pixelated; }
td.img { text-align: center; } td.img img { display: block; margin: 0 auto; border: 1px solid #d8dde2; }
td.hl { background: #fff1e0; outline: 3px solid #e8590c; outline-offset: -3px; font-weight: 600; }
.wide { overflow-x: auto; max-width: 100%; }
table.gallery td.l { max-width: 150px; overflow-wrap: anywhere; }
"""


@dataclass(frozen=True)
class Img:
    """An image in a table cell (`Page.table`): a path relative to the page, linked to itself,
    with a caption under it; a highlighted cell is framed."""

    src: str
    caption: str = ""
    width: int | None = None
    highlight: bool = False

    def markup(self) -> str:
        src = html.escape(self.src)
        w = f' width="{self.width}"' if self.width else ""
        cap = f"<br>{html.escape(self.caption)}" if self.caption else ""
        return f'<a href="{src}"><img src="{src}" alt="{html.escape(self.caption or self.src)}"{w}></a>{cap}'


class Page:
    """An HTML page built from blocks: headings, paragraphs, tables, figures."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> "Page":
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def paragraph(self, text: str, cls: str | None = None) -> "Page":
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{html.escape(text)}</p>")
        return self

    def notes(self, lines: list[str]) -> "Page":
        if lines:
            items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
            self.parts.append(f'<div class="note"><ul>{items}</ul></div>')
        return self

    def definitions(self, pairs: list[tuple[str, str]]) -> "Page":
        rows = "".join(f'<tr><th class="l">{html.escape(k)}</th><td class="l">{html.escape(v)}</td></tr>'
                       for k, v in pairs)
        self.parts.append(f"<table>{rows}</table>")
        return self

    def table(self, header: list[str], rows: list[list], left: int = 1, text: tuple[int, ...] = (),
              cls: str | None = None) -> "Page":
        """A table; the first `left` columns and those in `text` are left-aligned; floats are shown with
        4 significant digits; an `Img` cell shows its image. A table wider than the page scrolls in its
        own box, so the page itself never does. cls: the table's class (e.g. "gallery")."""
        def cell(value, i, tag):
            if isinstance(value, Img):
                cls = ' class="img hl"' if value.highlight else ' class="img"'
                return f"<{tag}{cls}>{value.markup()}</{tag}>"
            cls = ' class="l"' if i < left or i in text else ""
            return f"<{tag}{cls}>{html.escape(fmt(value))}</{tag}>"
        head = "".join(cell(h, i, "th") for i, h in enumerate(header))
        body = "".join("<tr>" + "".join(cell(v, i, "td") for i, v in enumerate(r)) + "</tr>" for r in rows)
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f'<div class="wide"><table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
                          "</table></div>")
        return self

    def figure(self, src: str, caption: str = "", width: int | None = None, pixelated: bool = False) -> "Page":
        w = f' width="{width}"' if width else ""
        cls = ' class="pixel"' if pixelated else ""
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption or src)}"{w}{cls}>'
                          f"{cap}</figure>")
        return self

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                        f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head>\n<body>\n"
                        f"<h1>{html.escape(self.title)}</h1>\n" + "\n".join(self.parts) + "\n</body></html>\n")
        return path


def fmt(value) -> str:
    """A table cell: None -> 'n/a', floats to 4 significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return str(value)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight", facecolor="white")
    pyplot().close(fig)
    return path


def grid_of_axes(count: int, columns: int = 3, size: tuple[float, float] = (4.2, 3.2)):
    """A figure with `count` axes in rows of `columns` (extra axes hidden) -> (fig, flat list)."""
    plt = pyplot()
    cols = max(1, min(columns, count))
    rows = max(1, math.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]
