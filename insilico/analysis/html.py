"""The one home of insilico's self-contained HTML pages (trial, fit and twin reports).

Each report builds its sections as HTML fragments with these helpers and hands them to
:func:`page`; :func:`write_page` writes the result atomically, refusing to replace anything
that is not an insilico report (recognised by ``<meta name="generator" content="insilico …">``,
`insilico.store.replace_owned`). Pages embed their figures as PNG data URIs, so one file holds
everything and opens offline.
"""
from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from insilico import store
from insilico.analysis.formatting import format_value
from insilico.errors import SpecError

__all__ = ["CSS", "escape", "figure", "figures", "key_values", "page", "png_data_uri", "table", "version", "write_page"]

CSS = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;color:#222;
     line-height:1.4;padding:0 1em}
h1{border-bottom:3px solid #1f77b4;padding-bottom:.2em}
h2{border-bottom:1px solid #ccc;margin-top:2em;color:#1f4e79}
h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eef3f8}
td.t,th.t,table.kv td{text-align:left}
tr:nth-child(even) td{background:#fafafa}
.ok{color:#176b1d;font-weight:bold}.bad{color:#b00;font-weight:bold}
figure{margin:1em 0 2em;text-align:center}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:13px;color:#555}
.note{color:#666;font-size:13px}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:12px}
nav a{margin-right:1em}
"""


def escape(x) -> str:
    """``str(x)`` escaped for HTML text and attribute values."""
    return html.escape(str(x), quote=True)


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def table(rows: Iterable[dict] | pd.DataFrame, cols: Sequence[str] | None = None, cls: str = "") -> str:
    """Rows (dicts or a DataFrame) as an HTML table: cells formatted by `format_value` and
    escaped; text columns left-aligned; a boolean ``ok`` column coloured; ``cols`` selects and
    orders the columns present; ``cls`` is the table's CSS class."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if cols is not None:
        df = df[[c for c in cols if c in df.columns]]
    head = "".join(f'<th class="t">{escape(c)}</th>' if df[c].dtype == object else f"<th>{escape(c)}</th>"
                   for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, row):
            klass = "t" if df[c].dtype == object or isinstance(v, str) else ""
            if c == "ok" and not _missing(v):
                klass = "ok" if bool(v) else "bad"
            text = escape(format_value(v))
            cells.append(f'<td class="{klass}">{text}</td>' if klass else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    c = f' class="{escape(cls)}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    """``(label, value)`` pairs as a two-column table (class ``kv``)."""
    rows = "".join(f'<tr><th class="t">{escape(k)}</th><td class="t">{escape(format_value(v))}</td></tr>'
                   for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def png_data_uri(fig, dpi: int) -> str:
    """A matplotlib figure as a ``data:image/png;base64,…`` URI (``dpi`` dots per inch)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure(fig, title: str, name: str, dpi: int) -> str:
    """A ``<figure id="fig-NAME">`` holding ``fig`` as an embedded PNG, captioned ``title``."""
    return (f'<figure id="fig-{escape(name)}"><img src="{png_data_uri(fig, dpi)}" alt="{escape(title)}">'
            f"<figcaption>{escape(title)}</figcaption></figure>")


def figures(makers: Iterable[tuple[str, str, Callable]], dpi: int) -> str:
    """Each ``(name, title, make)`` drawn by ``make()`` as a :func:`figure`; a figure that fails is
    replaced by a note naming the error, so one bad plot never costs the page."""
    out = []
    for name, title, make in makers:
        try:
            fig = make()
        except Exception as e:
            out.append(f"<p class='note'>{escape(title)}: not drawn ({escape(type(e).__name__)}: {escape(e)})</p>")
            continue
        out.append(figure(fig, title, name, dpi))
    return "\n".join(out)


def version() -> str:
    """The installed insilico version ("?" when unknown)."""
    try:
        from insilico import __version__
        return __version__
    except Exception:  # pragma: no cover
        return "?"


def page(title: str, sections: str | Sequence[tuple[str, str, str]], *, intro: str = "") -> str:
    """A complete HTML page: ``<title>insilico TITLE``, heading, ``intro`` (HTML), then the body.

    ``sections``: ``(id, heading, html)`` triples, each a ``<section id=…>`` with an ``<h2>``
    and listed in a navigation bar; or one HTML string used as the body as is."""
    if isinstance(sections, str):
        nav, body = "", sections
    else:
        nav = "<nav>" + "".join(f'<a href="#{escape(sid)}">{escape(t)}</a>' for sid, t, _ in sections) + "</nav>"
        body = "\n".join(f'<section id="{escape(sid)}"><h2>{escape(t)}</h2>\n{content}</section>'
                         for sid, t, content in sections)
    v = escape(version())
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="generator" content="insilico {v}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>insilico {escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body><h1>insilico {escape(title)}</h1>{intro}{nav}\n{body}\n"
            f"<p class='note'>generated by insilico {v}</p></body></html>\n")


def write_page(path: str | Path, render: Callable[[], str], *, overwrite: bool = False) -> Path:
    """Write the page ``render()`` returns to ``path`` (``.html``/``.htm``), atomically.

    The path is checked before anything is rendered: an existing file is replaced only with
    ``overwrite`` and only when it is an insilico report; otherwise `SpecError` naming ``--out``
    (the CLI exits 2) and nothing is touched."""
    path = store.check_out(path, folder=False)
    if path.suffix.lower() not in (".html", ".htm"):
        raise SpecError("--out", f"the report is an HTML file; expected a .html path, got {path}")
    if path.exists():
        store.replace_owned(path, "report", overwrite=overwrite)
    text = render()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
