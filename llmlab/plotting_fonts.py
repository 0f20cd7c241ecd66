"""Pick a matplotlib font that can draw Hangul, or fall back to English labels.

matplotlib's default (DejaVu Sans) has no Hangul glyphs: Korean text renders as empty boxes
("tofu") with a warning per glyph.  :func:`use_hangul_font` looks for a font that covers
Hangul — NanumGothic from Debian's ``fonts-nanum`` first, then other well-known Korean fonts,
then *any* installed font whose character map contains Hangul syllables — and configures
matplotlib to use it.  When none exists it leaves matplotlib alone and reports
``hangul=False``; :func:`label` then returns the English (romanised) text, so a figure never
shows tofu.

The search is a pure function of a list of ``(family name, file path)`` pairs and a coverage
check, both injectable, so the choice logic is tested without touching the machine's fonts::

    choice = use_hangul_font()            # FontChoice(family='NanumGothic', path='/usr/share/…', hangul=True)
    ax.set_xlabel(label("임계값 (threshold)", "threshold"))

Set ``LLMLAB_PLOT_LANG=en`` (or call ``set_label_language("en")``) for English labels even when
a Hangul font exists.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

#: Korean fonts in order of preference (first match wins before the coverage scan).
PREFERRED_FAMILIES: tuple[str, ...] = (
    "NanumGothic", "NanumBarunGothic", "NanumSquare", "Noto Sans CJK KR", "Noto Sans KR", "Source Han Sans KR",
    "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Source Han Sans", "UnDotum", "Baekmuk Gulim",
    "Malgun Gothic", "AppleGothic", "Apple SD Gothic Neo",
)

#: matplotlib's bundled font: the glyph-by-glyph fallback behind the Hangul font
FALLBACK_FAMILY = "DejaVu Sans"

#: characters a font must draw to count as Hangul-capable (a syllable from each end of the block)
HANGUL_PROBE = "한글가힣"

#: families that are monospace/coding variants: usable, but only after proportional ones
_DEPRIORITISED = ("Coding", "Mono")
#: families whose "glyphs" are placeholder boxes for every code point (matplotlib ships Last
#: Resort): their character map covers Hangul, their drawing of it is tofu
_PLACEHOLDERS = ("Last Resort",)


@dataclass(frozen=True)
class FontChoice:
    """The font matplotlib was configured with; ``hangul`` says whether Korean labels are safe."""

    family: str | None
    path: str | None
    hangul: bool
    reason: str


_CURRENT: FontChoice | None = None
_LANGUAGES = ("auto", "ko", "en")
_LANGUAGE = os.environ.get("LLMLAB_PLOT_LANG", "auto").strip().lower() or "auto"


def set_label_language(language: str) -> None:
    """``"auto"`` (Korean when a Hangul font exists), ``"ko"`` (same, never tofu) or ``"en"``."""
    global _LANGUAGE
    if language not in _LANGUAGES:
        raise ValueError(f"language={language!r} is invalid: allowed one of {', '.join(_LANGUAGES)}")
    _LANGUAGE = language


def font_covers(path: str, text: str = HANGUL_PROBE) -> bool:
    """True when the font file at ``path`` has a glyph for every character of ``text``."""
    try:
        from matplotlib.ft2font import FT2Font

        charmap = FT2Font(path).get_charmap()
    except Exception:  # unreadable or unsupported font file
        return False
    return all(ord(ch) in charmap for ch in text)


def installed_fonts() -> list[tuple[str, str]]:
    """``(family, path)`` for every font matplotlib's font manager knows, and every font file on
    the system it does not: its list is cached (``~/.cache/matplotlib``), so a Korean font
    installed after matplotlib first ran was missing from it."""
    from matplotlib import font_manager

    known = [(f.name, f.fname) for f in font_manager.fontManager.ttflist]
    paths = {path for _, path in known}
    try:
        on_disk = font_manager.findSystemFonts()
    except Exception:  # a font folder that cannot be read
        on_disk = []
    for path in sorted(set(on_disk) - paths):
        try:
            from matplotlib.ft2font import FT2Font

            known.append((FT2Font(path).family_name, path))
        except Exception:  # not a font matplotlib can read
            continue
    return known


def find_hangul_font(fonts: Iterable[tuple[str, str]] | None = None,
                     covers: Callable[[str], bool] | None = None,
                     preferred: Sequence[str] = PREFERRED_FAMILIES) -> FontChoice:
    """Choose a Hangul-capable font from ``fonts`` (default: the installed ones).

    Preferred families come first, in ``preferred`` order, but only if their file really covers
    Hangul; then any other font that covers it (proportional before monospace, then by name, so
    the choice is deterministic).  No candidate → ``FontChoice(None, None, False, …)``.
    """
    candidates = sorted((family, path) for family, path in set(installed_fonts() if fonts is None else fonts)
                        if not family.startswith(_PLACEHOLDERS))
    check = covers or font_covers
    by_family: dict[str, list[str]] = {}
    for family, path in candidates:
        by_family.setdefault(family, []).append(path)
    for family in preferred:
        for path in by_family.get(family, []):
            if check(path):
                return FontChoice(family, path, True, f"preferred Korean font {family}")
    rest = sorted(((any(tag in family for tag in _DEPRIORITISED), family, path) for family, path in candidates
                   if family not in preferred))
    for _, family, path in rest:
        if check(path):
            return FontChoice(family, path, True, f"{family} covers Hangul")
    return FontChoice(None, None, False, "no installed font covers Hangul: labels fall back to English")


def use_hangul_font(rc: Any = None, fonts: Iterable[tuple[str, str]] | None = None,
                    covers: Callable[[str], bool] | None = None) -> FontChoice:
    """Find a Hangul font and put it first in matplotlib's sans-serif list (``rc`` = rcParams).

    ``font.family`` becomes ``[<the font>, "DejaVu Sans"]``: matplotlib falls back glyph by
    glyph along that list, so symbols a Korean font lacks (µ, U+2212 minus) come from DejaVu
    Sans (shipped with matplotlib) instead of rendering as boxes.  ``axes.unicode_minus`` is
    turned off as well, so tick labels use the ASCII hyphen-minus every font has.
    Returns the choice, remembered for :func:`label`.  Without a Hangul font, ``rc`` is left
    untouched.
    """
    global _CURRENT
    if rc is None:
        import matplotlib

        rc = matplotlib.rcParams
    choice = find_hangul_font(fonts, covers)
    if choice.hangul and choice.family is not None:
        if fonts is None and choice.path is not None:
            try:  # make sure the font manager knows the file (it does when it came from its list)
                from matplotlib import font_manager

                font_manager.fontManager.addfont(choice.path)
            except Exception:
                pass
        current = list(rc.get("font.sans-serif", []))
        rc["font.sans-serif"] = [choice.family] + [f for f in current if f != choice.family]
        rc["font.family"] = [choice.family, FALLBACK_FAMILY]
        rc["axes.unicode_minus"] = False
    _CURRENT = choice
    return choice


def current_choice() -> FontChoice:
    """The last choice made by :func:`use_hangul_font` (made now, on first use)."""
    return _CURRENT if _CURRENT is not None else use_hangul_font()


def has_hangul(text: str) -> bool:
    """True when ``text`` contains a Hangul syllable or jamo."""
    return any("\uac00" <= ch <= "\ud7a3" or "\u1100" <= ch <= "\u11ff" or "\u3130" <= ch <= "\u318f"
               for ch in text)


def label(korean: str, english: str, choice: FontChoice | None = None) -> str:
    """``korean`` when the configured font draws Hangul, else ``english`` (never tofu).

    ``set_label_language("en")`` (or ``LLMLAB_PLOT_LANG=en``) always picks ``english``.
    """
    if _LANGUAGE == "en":
        return english
    chosen = choice if choice is not None else current_choice()
    return korean if chosen.hangul or not has_hangul(korean) else english
