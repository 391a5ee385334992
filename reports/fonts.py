"""The Chinese font the PDF report embeds and its charts draw with.

Noto Sans SC (SIL Open Font License) from the PyPI package ``pylopdf-fonts-zh-cn``, a dependency, so a
machine set up with ``./scripts/bootstrap`` (pip only) renders Chinese without any system font; Debian's
CJK fonts are used when that package is missing. The PDF embeds a subset of the font, with a ToUnicode
map, so its text can be searched and extracted.
"""

from __future__ import annotations

import functools
from pathlib import Path

SYSTEM_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


class FontMissing(RuntimeError):
    pass


@functools.cache
def cjk_font() -> Path:
    """The path of a font with Simplified Chinese glyphs."""
    try:
        import pylopdf_fonts_zh_cn

        path = Path(pylopdf_fonts_zh_cn.__file__).parent / "NotoSansSC-Regular.otf"
        if path.is_file():
            return path
    except ImportError:
        pass
    for candidate in SYSTEM_FONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FontMissing("no Chinese font for the PDF: install the project again (pip install -e .) to get "
                      "pylopdf-fonts-zh-cn, or apt-get install fonts-noto-cjk")
