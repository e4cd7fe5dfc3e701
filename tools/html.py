"""HTML to readable markdown: our own cleaning first, then markdownify.

Cleaning drops what a reader does not see or does not need (scripts, styles, embedded frames,
navigation, forms, elements hidden by attribute or inline style) and invisible Unicode that can
smuggle instructions past a human reviewer. Headings, code blocks (with their language) and
links (made absolute) are kept.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

from bs4 import BeautifulSoup, Comment, Tag
from markdownify import MarkdownConverter
from pydantic import BaseModel

from agent.invisible import strip_invisible  # the one definition of invisible code points

__all__ = ["Page", "fence", "html_to_markdown", "longest_backtick_run", "strip_invisible"]

_DROP_TAGS = (
    "script", "style", "noscript", "template", "iframe", "frame", "frameset", "object", "embed",
    "svg", "canvas", "math", "audio", "video", "source", "track", "map", "link", "meta", "base",
    "nav", "aside", "form", "input", "button", "select", "textarea", "label", "dialog",
)  # fmt: skip
_NAV_ROLES = frozenset(
    {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar", "toolbar"}
)
_HIDDEN_STYLE = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)|opacity\s*:\s*0(?:\.0*)?\s*(?:;|$|!)"
    r"|font-size\s*:\s*0(?:px|em|rem|pt|%)?\s*(?:;|$|!))",
    re.IGNORECASE,
)
_LANG_CLASS = re.compile(r"^(?:language|lang|highlight-source|highlight)-([\w+#.-]+)$")


class Page(BaseModel):
    """A cleaned page: its title and body as markdown."""

    title: str = ""
    markdown: str


def longest_backtick_run(text: str) -> int:
    """Length of the longest run of backticks in `text` (0 if none)."""
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def fence(text: str, *, info: str = "") -> str:
    """Wrap `text` in a code fence longer than any backtick run inside it."""
    ticks = "`" * max(3, longest_backtick_run(text) + 1)
    return f"{ticks}{info}\n{text.rstrip(chr(10))}\n{ticks}"


def _is_hidden(tag: Tag) -> bool:
    if tag.has_attr("hidden"):
        return True
    if str(tag.get("aria-hidden", "")).strip().lower() == "true":
        return True
    if tag.name == "input" and str(tag.get("type", "")).lower() == "hidden":
        return True
    style = tag.get("style")
    return bool(style and _HIDDEN_STYLE.search(str(style)))


def _is_navigation(tag: Tag) -> bool:
    if str(tag.get("role", "")).strip().lower() in _NAV_ROLES:
        return True
    # A page-level header or footer is site chrome; one inside an article is part of it.
    if tag.name in ("header", "footer"):
        return tag.find_parent(["article", "main", "section"]) is None
    return False


def _code_language(el: Tag) -> str:
    for node in (el, el.find("code")):
        if not isinstance(node, Tag):
            continue
        if node.get("data-lang"):
            return str(node["data-lang"])
        classes = node.get("class") or []
        for cls in classes if isinstance(classes, list) else str(classes).split():
            m = _LANG_CLASS.match(cls)
            if m:
                return m.group(1)
    parent = el.parent
    if isinstance(parent, Tag):  # GitHub and Sphinx put the language on a wrapping div
        for cls in parent.get("class") or []:
            m = _LANG_CLASS.match(cls)
            if m:
                return m.group(1)
    return ""


class _Converter(MarkdownConverter):
    def convert_pre(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        if not text.strip():
            return ""
        body = text.strip("\n")
        return "\n\n" + fence(body, info=_code_language(el)) + "\n\n"

    def convert_img(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        alt = (el.get("alt") or "").strip()
        return f"[image: {alt}]" if alt else ""


def html_to_markdown(html: str | bytes, *, base_url: str | None = None) -> Page:
    """Clean `html` and convert it to markdown; relative links are resolved against `base_url`."""
    soup = BeautifulSoup(html, "html.parser")
    for c in soup.find_all(string=lambda s: isinstance(s, Comment)):
        c.extract()
    title_tag = soup.find("title")
    title = strip_invisible(title_tag.get_text(" ", strip=True)) if title_tag else ""
    for t in soup.find_all(["head", "title"]):
        t.decompose()
    for t in soup.find_all(_DROP_TAGS):
        t.decompose()
    # Collect first, then decompose: removing a parent detaches its children from the tree.
    doomed = [t for t in soup.find_all(True) if _is_hidden(t) or _is_navigation(t)]
    for t in doomed:
        if not t.decomposed:
            t.decompose()
    for a in soup.find_all("a"):
        href = str(a.get("href") or "").strip()
        if not href or href.lower().startswith(("javascript:", "data:", "vbscript:")):
            del a["href"]
        elif base_url:
            a["href"] = urljoin(base_url, href)
        for attr in ("title",):
            if a.has_attr(attr):
                del a[attr]
    md = _Converter(
        heading_style="ATX", bullets="-", escape_underscores=False, escape_misc=False
    ).convert_soup(soup)
    md = strip_invisible(md)
    md = re.sub(r"[ \t]+\n", "\n", md)
    md = re.sub(r"\n{3,}", "\n\n", md).strip()
    return Page(title=title, markdown=md)
