"""The Chinese font the PDF report embeds and its charts draw with.

WenQuanYi Micro Hei (文泉驿微米黑, Apache 2.0 / GPLv3 with the font exception) from the PyPI package
``paperang-p2-fonts-cjk``, a dependency, so a machine set up with ``./scripts/bootstrap`` (pip only)
renders Chinese without any system font; Debian's CJK fonts are used when that package is missing. The
PDF embeds a subset of the font (TrueType outlines, ``Identity-H`` with a ToUnicode map), so its text can
be searched and extracted. (A CFF-outline font such as Noto Sans SC's OTF came out of fpdf2 with an
encoding that pypdf and pdfminer.six could not read back; TrueType outlines avoid that.)
"""

from __future__ import annotations

import functools
from pathlib import Path

SYSTEM_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


class FontMissing(RuntimeError):
    pass


@functools.cache
def cjk_font() -> Path:
    """The path of a font with Simplified Chinese glyphs."""
    try:
        import paperang_p2_fonts_cjk

        path = Path(paperang_p2_fonts_cjk.__file__).parent / "fonts" / "wqy-microhei.ttc"
        if path.is_file():
            return path
    except ImportError:
        pass
    for candidate in SYSTEM_FONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FontMissing("no Chinese font for the PDF: install the project again (pip install -e .) to get "
                      "paperang-p2-fonts-cjk, or apt-get install fonts-wqy-microhei")
