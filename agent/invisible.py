"""Invisible Unicode: the one definition of which code points a reader cannot see.

Zero-width and joiner characters, bidi controls (the "Trojan Source" overrides, CVE-2021-42574),
soft hyphen, word joiners and invisible operators, BOM, Hangul fillers, variation selectors and
the tag characters that can spell hidden instructions. Web pages have them stripped; file text
(view, grep, shell output, the pack) shows each as an escape such as `\\u202e`, with a note
saying the text holds them, and `str_replace` accepts the escapes back.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

__all__ = ["INVISIBLE", "invisible_note", "show_invisible", "strip_invisible", "unshow_invisible"]

INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U000e0000-\U000e007f"
    "\U000e0100-\U000e01ef]"
)
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})")


def strip_invisible(text: str) -> str:
    """Remove zero-width, bidi-control, tag and other invisible characters."""
    return text if text.isascii() else INVISIBLE.sub("", text)


def _escape(ch: str) -> str:
    cp = ord(ch)
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


def show_invisible(text: str) -> tuple[str, Counter[str]]:
    """`text` with each invisible character written as its escape, and how many of each."""
    if text.isascii():
        return text, Counter()
    found: Counter[str] = Counter(INVISIBLE.findall(text))
    if not found:
        return text, found
    return INVISIBLE.sub(lambda m: _escape(m[0]), text), found


def invisible_note(found: Counter[str], *, where: str = "this text") -> str:
    """One sentence saying that `where` holds invisible characters and how they are shown."""
    total = sum(found.values())
    kinds = ", ".join(
        f"{_escape(ch)} {unicodedata.name(ch, 'U+%04X' % ord(ch)).lower()} x{n}" for ch, n in found.most_common(3)
    )
    more = f" and {len(found) - 3} more kinds" if len(found) > 3 else ""
    return (
        f"[{where} holds {total} invisible Unicode character{'s' if total != 1 else ''} ({kinds}{more}), "
        "shown as escapes; they are really there. str_replace accepts the escapes as shown.]"
    )


def unshow_invisible(text: str) -> str:
    """`text` with the escapes of invisible characters turned back into the characters."""

    def back(m: re.Match[str]) -> str:
        cp = int(m[1] or m[2], 16)
        ch = chr(cp) if cp <= 0x10FFFF else ""
        return ch if ch and INVISIBLE.fullmatch(ch) else m[0]

    return _ESCAPE.sub(back, text) if "\\" in text else text
