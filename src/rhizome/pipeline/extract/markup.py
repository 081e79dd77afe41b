"""HTML/XHTML → markdown with markdownify (shared by the EPUB and HTML extractors)."""

from __future__ import annotations

import re
import warnings
from html.entities import name2codepoint

from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
from bs4.element import Comment, NavigableString, Tag
from markdownify import MarkdownConverter

# <nav>: tables of contents and menus (only links); canvas/audio/video: "not supported" texts
_DROP_TAGS = (
    "script", "style", "noscript", "template", "svg", "iframe", "object", "nav",
    "canvas", "audio", "video",
)  # fmt: skip


_WHITESPACE = re.compile(r"\s+")
_ENTITY = re.compile(rb"&([A-Za-z][A-Za-z0-9]{1,31});")
_XML_ENTITIES = frozenset({b"amp", b"lt", b"gt", b"quot", b"apos"})


def _numeric_entity(m: re.Match[bytes]) -> bytes:
    name = m.group(1)
    if name in _XML_ENTITIES:
        return m.group(0)
    code = name2codepoint.get(name.decode("ascii"))
    return b"&#%d;" % code if code is not None else m.group(0)


def html_entities_to_numeric(data: bytes) -> bytes:
    """``&nbsp;`` → ``&#160;``: an XML parser knows only the five XML entities and would
    silently drop the HTML ones that EPUB 2 books use."""
    return _ENTITY.sub(_numeric_entity, data) if b"&" in data else data


class Converter(MarkdownConverter):
    """markdownify with our defaults: ATX headings, '-' bullets, links and images as text."""

    def __init__(self) -> None:
        super().__init__(
            heading_style="ATX",
            bullets="-",
            newline_style="BACKSLASH",
            strip=["a", "img"],
            escape_misc=False,
        )


def prepare_body(body: Tag) -> None:
    """Drop scripts, styles, menus and comments; collapse whitespace outside ``<pre>``/``<code>``
    (HTML renders any run of whitespace as one space; markdown would keep the newlines)."""
    for tag in body.find_all(_DROP_TAGS):
        tag.decompose()
    stack: list[Tag] = [body]
    while stack:
        tag = stack.pop()
        for child in list(tag.children):
            if isinstance(child, Comment):
                child.extract()
            elif isinstance(child, NavigableString):
                value = str(child)
                collapsed = _WHITESPACE.sub(" ", value)
                if collapsed != value:
                    child.replace_with(NavigableString(collapsed))
            elif isinstance(child, Tag) and child.name not in ("pre", "code"):
                stack.append(child)


def xhtml_to_markdown(data: bytes, converter: MarkdownConverter | None = None) -> str:
    """One XHTML document → markdown (its ``<body>``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        try:
            soup = BeautifulSoup(html_entities_to_numeric(data), "lxml-xml")
            body = soup.find(lambda t: t.name == "body")
            if body is None:
                raise ValueError("no body")
        except Exception:
            soup = BeautifulSoup(data, "lxml")
            body = soup.body or soup
    if not isinstance(body, Tag):
        return ""
    prepare_body(body)
    md = (converter or Converter()).convert_soup(body)
    return re.sub(r"\n{3,}", "\n\n", md).strip()
