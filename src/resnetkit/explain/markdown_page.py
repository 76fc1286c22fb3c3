"""Turn resnetkit's own Markdown reports into one self-contained HTML page.

The experiments write report.md (headings, paragraphs, lists, tables, code blocks, images and
links). The same text becomes report.html with every referenced PNG embedded, so the plots of
an experiment sit side by side on one page that opens offline. This reads only the small
Markdown subset resnetkit writes; it is not a general Markdown renderer.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from ..core.fileio import atomic_write_text
from .render import embedded_png

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
td, th { border: 1px solid #ddd; padding: 0.2rem 0.5rem; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
.figures img { max-width: 100%; flex: 1 1 45%; min-width: 320px; }
"""


def _inline(text: str, base: Path) -> str:
    """Escape, then turn images, links, code and bold into HTML."""

    def image(match: re.Match[str]) -> str:
        alt, target = match.group(1), match.group(2)
        path = (base / target).resolve()
        if target.startswith(("http:", "https:")) or not path.is_file():
            return html.escape(alt)  # never fetched: the page makes no network requests
        return f"<img src='{embedded_png(path)}' alt='{html.escape(alt)}'>"

    parts = []
    last = 0
    for match in _IMAGE.finditer(text):
        parts.append(_text_inline(text[last : match.start()]))
        parts.append(image(match))
        last = match.end()
    parts.append(_text_inline(text[last:]))
    return "".join(parts)


def _text_inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = _CODE.sub(r"<code>\1</code>", text)
    text = _BOLD.sub(r"<b>\1</b>", text)
    return _LINK.sub(
        lambda m: (
            f"<a href='{html.escape(m.group(2).replace('.md', '.html'))}'>{m.group(1)}</a>"
            if not m.group(2).startswith(("http:", "https:"))
            else m.group(1)
        ),
        text,
    )


def _table(rows: list[str], base: Path) -> str:
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    body = [r for r in cells if not all(set(c) <= set("-: ") for c in r)]
    head, *rest = body
    out = "<tr>" + "".join(f"<th>{_inline(c, base)}</th>" for c in head) + "</tr>"
    for row in rest:
        out += "<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in row) + "</tr>"
    return f"<table>{out}</table>"


def markdown_to_html(text: str, base: Path) -> str:
    """The body HTML for resnetkit's Markdown subset; images resolved against `base`."""
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines)
            )
            blocks.append(f"<pre>{html.escape(chr(10).join(lines[i + 1 : end]))}</pre>")
            i = end + 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            blocks.append(f"<h{level}>{_inline(line.lstrip('#').strip(), base)}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            blocks.append(_table(lines[i:j], base))
            i = j
        elif line.lstrip().startswith(("- ", "* ")):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith(("- ", "* ")):
                j += 1
            items = "".join(f"<li>{_inline(x.lstrip()[2:], base)}</li>" for x in lines[i:j])
            blocks.append(f"<ul>{items}</ul>")
            i = j
        elif _IMAGE.fullmatch(line.strip()):
            j = i
            while j < len(lines) and (not lines[j].strip() or _IMAGE.fullmatch(lines[j].strip())):
                j += 1
            images = "".join(_inline(x.strip(), base) for x in lines[i:j] if x.strip())
            blocks.append(f"<div class='figures'>{images}</div>")  # plots side by side
            i = j
        elif line.strip() in ("", "<details>", "</details>") or line.startswith("<summary"):
            i += 1
        else:
            j = i
            while (
                j < len(lines)
                and lines[j].strip()
                and not lines[j].startswith(("#", "|", "```", "- ", "!"))
            ):
                j += 1
            j = max(j, i + 1)
            blocks.append(f"<p>{_inline(' '.join(lines[i:j]), base)}</p>")
            i = j
    return "\n".join(blocks)


def write_markdown_page(markdown_path: str | Path, title: str | None = None) -> Path:
    """report.md -> report.html beside it, images embedded."""
    markdown_path = Path(markdown_path)
    text = markdown_path.read_text()
    heading = next((x.lstrip("#").strip() for x in text.splitlines() if x.startswith("#")), "")
    title = title or heading or markdown_path.stem
    page = (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + markdown_to_html(text, markdown_path.parent)
        + "\n</body></html>\n"
    )
    return atomic_write_text(markdown_path.with_suffix(".html"), page)
