"""Web pages → markdown: trafilatura for the main content (menus, footers, ads dropped);
for tiny pages, markdownify of the whole ``<body>`` when trafilatura finds nothing or
clearly less than the body holds."""

from __future__ import annotations

import re
import warnings
from typing import Any

from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
from bs4.element import Tag

from rhizome.errors import InvalidInputError

from .base import Extracted, tidy_title
from .markup import Converter, prepare_body
from .text import first_heading

#: below this many words from trafilatura, the whole body (markdownify) is tried too
SMALL_PAGE_WORDS = 100
_AUTHOR_PREFIX = re.compile(r"^(view all posts by|all posts by|posted by|written by|by)\s+", re.I)
_KEY = re.compile(r"[\W_]+")
_WORD = re.compile(r"\w+")
# Wikipedia-style noise that trafilatura keeps: "[edit]" links in headings, <sup>[1]</sup>
_EDIT_LINK = re.compile(r"^(#{1,6} .*?)\s*\\\[edit\\\]\s*$", re.MULTILINE)
_CITATION = re.compile(r"<sup>\\\[(?:\d{1,4}|[a-z]{1,2}|citation needed|note \d+)\\\]</sup>")
_META_FIELDS = (
    "url", "hostname", "sitename", "date", "description", "language",
    "categories", "tags", "license", "image", "pagetype",
)  # fmt: skip


def _key(text: str) -> str:
    return _KEY.sub("", text.casefold())


def _fallback(data: bytes) -> tuple[str, str | None]:
    """markdownify of the whole body; returns (markdown, title)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(data, "lxml")
    title: str | None = None
    og = soup.find("meta", attrs={"property": "og:title"})
    if isinstance(og, Tag) and og.get("content"):
        title = str(og.get("content"))
    elif soup.title is not None and soup.title.string:
        title = str(soup.title.string)
    body = soup.body or soup
    if not isinstance(body, Tag):
        return "", title
    for tag in body.find_all(["head", "form", "button", "input", "select"]):
        tag.decompose()
    prepare_body(body)
    md = Converter().convert_soup(body)
    md = re.sub(r"\n{3,}", "\n\n", md).strip()
    return md, title


def extract_html(data: bytes, *, url: str | None = None) -> Extracted:
    import trafilatura
    from trafilatura.utils import normalize_unicode
    from trafilatura.xml import xmltotxt

    doc: Any = None
    try:
        doc = trafilatura.bare_extraction(
            data,
            url=url,
            output_format="markdown",
            include_formatting=True,
            include_tables=True,
            include_comments=False,
            with_metadata=True,
        )
    except Exception:  # trafilatura is best effort; the fallback still runs
        doc = None
    markdown = ""
    if doc is not None and getattr(doc, "body", None) is not None:
        markdown = normalize_unicode(xmltotxt(doc.body, True)).strip()
        markdown = _CITATION.sub("", _EDIT_LINK.sub(r"\1", markdown))
    title = tidy_title(getattr(doc, "title", None)) if doc is not None else None
    extractor = "trafilatura"
    words = len(_WORD.findall(markdown))
    if words < SMALL_PAGE_WORDS:
        # tiny pages: trafilatura may find nothing, or drop half of what little there is
        fallback, fallback_title = _fallback(data)
        more = len(_WORD.findall(fallback))
        if (more > words and more >= 1.5 * words) or not markdown:
            markdown = fallback
            title = title or tidy_title(fallback_title)
            extractor = "markdownify"
    if not markdown.strip():
        raise InvalidInputError(
            "The web page has no readable text (it may be empty, need JavaScript, or "
            "require a login).",
            "Open the page in your browser, save it (or print it to PDF) and add that file.",
        )
    title = title or first_heading(markdown)
    if title:
        head = first_heading("\n".join(markdown.split("\n")[:12]))
        if head is None or _key(head) != _key(title):
            markdown = f"# {title}\n\n{markdown}"
    author = getattr(doc, "author", None) if doc is not None else None
    if author:
        author = _AUTHOR_PREFIX.sub("", author)
    metadata: dict[str, Any] = {"extractor": extractor}
    if doc is not None:
        for name in _META_FIELDS:
            value = getattr(doc, name, None)
            if value:
                metadata[name] = value
    if url and "url" not in metadata:
        metadata["url"] = url
    return Extracted(
        markdown=markdown + "\n",
        title=title,
        author=tidy_title(author),
        source_type="html",
        page_count=None,
        metadata=metadata,
    )
