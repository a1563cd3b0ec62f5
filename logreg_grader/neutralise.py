"""Student markdown made safe to render as the instructor, without changing what it says.

formgrader renders the autograded notebook's markdown cells on the Jupyter origin, with
nbconvert, unsanitised: raw HTML (``<script>``, ``<img onerror>``) and ``javascript:`` links
would run as the instructor. :func:`markdown_cell` therefore

- escapes ``<`` in the text, but **not** inside math (``$...$``, ``$$...$$``) or code (spans
  and fenced blocks), so that ``$z < -104$`` and ``` `p < 1e-45` ``` render as written;
- rewrites link and image targets whose scheme is ``javascript:``, ``vbscript:`` or ``data:``
  (after decoding entities and dropping blanks, as browsers do) to ``#``;
- keeps pasted raster images (PNG, JPEG, GIF attachments) and drops any other attachment,
  with the references to it (nbconvert refuses a notebook whose reference has no attachment).
"""

from __future__ import annotations

import html
import re

RASTER = ("image/png", "image/jpeg", "image/gif")
_BAD_SCHEMES = ("javascript:", "vbscript:", "data:")
# Code and math, which are shown as written: fenced blocks, $$...$$, code spans, $...$.
_PROTECTED = re.compile(
    r"(^[ \t]*(```|~~~).*?^[ \t]*\2[ \t]*$"  # fenced code block
    r"|\$\$.+?\$\$"  # display math
    r"|(`+).+?\3"  # code span
    r"|(?<![\\$])\$(?!\s)[^$\n]+?(?<![\s\\])\$)",  # inline math
    re.S | re.M,
)
_INLINE_TARGET = re.compile(r"(\]\(\s*<?)([^)\s>]*)")
_REFERENCE_TARGET = re.compile(r"^(\s{0,3}\[[^\]]+\]:\s*<?)(\S+)", re.M)


def _unsafe(target: str) -> bool:
    plain = re.sub(r"[\s\x00-\x1f]+", "", html.unescape(target)).lower()
    return plain.startswith(_BAD_SCHEMES)


def _text(segment: str, kept) -> str:
    def fix(match):
        target = match.group(2)
        if _unsafe(target):
            return match.group(1) + "#"
        if target.startswith("attachment:") and target[len("attachment:") :] not in kept:
            return match.group(1) + "#"
        return match.group(0)

    segment = _INLINE_TARGET.sub(fix, segment)
    segment = _REFERENCE_TARGET.sub(fix, segment)
    return segment.replace("<", "&lt;")


def markdown(source: str, kept=frozenset()) -> str:
    """The markdown ``source`` with its HTML and dangerous links neutralised; ``kept``: the
    names of the attachments that stay (references to any other become ``#``)."""
    out, last = [], 0
    for match in _PROTECTED.finditer(source):
        out.append(_text(source[last : match.start()], kept))
        out.append(match.group(0))
        last = match.end()
    out.append(_text(source[last:], kept))
    return "".join(out)


def markdown_cell(cell: dict) -> dict:
    """A copy of a markdown (or raw) cell that is safe to render; see the module docstring."""
    cell = dict(cell)
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else str(source)
    kept = {}
    attachments = cell.pop("attachments", None)
    for name, bundle in (attachments if isinstance(attachments, dict) else {}).items():
        if isinstance(name, str) and isinstance(bundle, dict):
            images = {k: v for k, v in bundle.items() if k in RASTER and isinstance(v, str)}
            if images:
                kept[name] = images
    if kept:
        cell["attachments"] = kept
    if cell.get("cell_type") == "raw":  # nbconvert copies raw cells into the page as they are
        cell["metadata"] = {
            k: v
            for k, v in (cell.get("metadata") or {}).items()
            if k not in ("format", "raw_mimetype")
        }
        cell["source"] = source.replace("<", "&lt;")
        return cell
    cell["source"] = markdown(source, kept)
    return cell
