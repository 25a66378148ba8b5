"""Synthetic screen content: rendered documents, code editors and dashboards, as shared in calls.

Calls often carry a shared screen (slides, documents, code) and the photo packages hold little of it. These
frames are drawn with Pillow's TrueType renderer (anti-aliased text, the DejaVu fonts matplotlib ships) and
OpenCV's anti-aliased lines, at 1.5x the size they are used at, so the pool's INTER_AREA downscale leaves
them as sharp as a real screen. Every frame is a deterministic function of its seed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

LAYOUTS = ("document", "code", "dashboard")
#: File-name prefixes of the rendered frames in the photo pool (``screen-NN-layout``, ``scan-NN-kind``).
SCREEN_PREFIX, SCAN_PREFIX = "screen", "scan"


def is_synthetic(path: Path | str) -> bool:
    """Whether a pool file is one of these rendered screens or scanned pages (by its name)."""
    return Path(path).name.startswith((f"{SCREEN_PREFIX}-", f"{SCAN_PREFIX}-"))


#: Rendered size (width, height): 1.5x a 1080p frame, shrunk by the pool like any training source.
RENDER_SIZE = (2880, 1620)
#: Rendered size of a scanned page (portrait, 1.5x its size in the pool).
SCAN_SIZE = (2160, 2880)
_SYLLABLES = (
    "an", "ba", "con", "de", "el", "for", "ge", "hi", "in", "ja", "ka", "lo", "men", "no", "or", "pre",
    "qui", "ra", "st", "tion", "un", "ve", "wa", "xi", "yo", "ze", "th", "er", "al", "is",
)  # fmt: skip


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _font(name: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(_font_dir() / name), size)


def _words(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        word = "".join(rng.choice(_SYLLABLES) for _ in range(int(rng.integers(1, 4))))
        out.append(word.capitalize() if rng.random() < 0.1 else word)
    return out


def _colour(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))


def _paragraphs(draw, rng, box, fonts, ink, accent) -> None:
    """Word-wrapped paragraphs and bullet lists filling ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    y = y0
    while y < y1:
        font = fonts[int(rng.integers(0, len(fonts)))]
        line_h = int(font.size * 1.45)
        bullet = rng.random() < 0.25
        x = x0 + (int(font.size * 1.5) if bullet else 0)
        if bullet:
            draw.ellipse(
                (x0 + 4, y + line_h // 3, x0 + 4 + font.size // 3, y + line_h // 3 + font.size // 3), fill=ink
            )
        for word in _words(rng, int(rng.integers(8, 60))):
            w = draw.textlength(word + " ", font=font)
            if x + w > x1:
                x, y = x0 + (int(font.size * 1.5) if bullet else 0), y + line_h
                if y + line_h > y1:
                    return
            draw.text((x, y), word, font=font, fill=accent if rng.random() < 0.06 else ink)
            x += w
        y += line_h * 2


def _document(draw, rng, size) -> None:
    w, h = size
    ink = _colour(rng, 10, 70)
    serif = rng.random() < 0.5
    body = "DejaVuSerif.ttf" if serif else "DejaVuSans.ttf"
    title = _font("DejaVuSerif-Bold.ttf" if serif else "DejaVuSans-Bold.ttf", int(rng.integers(48, 90)))
    margin = int(rng.integers(120, 500))
    draw.text((margin, 170), " ".join(_words(rng, 5)), font=title, fill=ink)
    fonts = [_font(body, int(s)) for s in rng.integers(20, 44, size=3)]
    _paragraphs(draw, rng, (margin, 200 + title.size * 2, w - margin, h - 80), fonts, ink, (30, 80, 200))


def _code(draw, rng, size) -> None:
    w, h = size
    font = _font("DejaVuSansMono.ttf", int(rng.integers(20, 36)))
    line_h = int(font.size * 1.4)
    gutter = font.size * 4
    draw.rectangle((0, 90, int(w * 0.16), h), fill=_colour(rng, 25, 45))
    side = _font("DejaVuSans.ttf", 24)
    for i, y in enumerate(range(130, h - 40, 44)):
        draw.text((30 + 20 * (i % 3), y), ".".join(_words(rng, 2)), font=side, fill=(190, 190, 190))
    palette = [
        (220, 220, 220),
        (86, 156, 214),
        (206, 145, 120),
        (78, 201, 176),
        (197, 134, 192),
        (106, 153, 85),
    ]
    x_text = int(w * 0.16) + gutter
    for n, y in enumerate(range(110, h - line_h, line_h), 1):
        draw.text((int(w * 0.16) + 10, y), f"{n:4d}", font=font, fill=(110, 110, 110))
        x = x_text + font.size * 2 * int(rng.integers(0, 5))
        for word in _words(rng, int(rng.integers(0, 9))):
            token = word + rng.choice(["", "(", ")", ".", ", ", " = ", ":"])
            draw.text((x, y), token, font=font, fill=palette[int(rng.integers(0, len(palette)))])
            x += draw.textlength(token + " ", font=font)


def _dashboard(draw, rng, size) -> list[tuple[int, int, int, int]]:
    """Cards with headings and figures; returns the boxes left empty for charts."""
    w, h = size
    ink = _colour(rng, 20, 80)
    head, small = _font("DejaVuSans-Bold.ttf", 40), _font("DejaVuSans.ttf", int(rng.integers(20, 30)))
    cols, rows = int(rng.integers(2, 4)), 2
    cw, ch = (w - 100) // cols, (h - 180) // rows
    charts = []
    for r in range(rows):
        for c in range(cols):
            x0, y0 = 50 + c * cw, 140 + r * ch
            box = (x0 + 15, y0 + 15, x0 + cw - 15, y0 + ch - 15)
            draw.rounded_rectangle(box, 18, fill=(255, 255, 255), outline=(200, 200, 205), width=2)
            draw.text((x0 + 45, y0 + 40), " ".join(_words(rng, 2)), font=head, fill=ink)
            if (r + c) % 2:
                charts.append((x0 + 60, y0 + 110, x0 + cw - 60, y0 + ch - 50))
                continue
            for k in range(int((ch - 160) / (small.size * 1.8))):
                y = y0 + 110 + k * int(small.size * 1.8)
                draw.text((x0 + 45, y), " ".join(_words(rng, 2)), font=small, fill=ink)
                draw.text((x0 + cw - 220, y), f"{rng.uniform(0, 9999):8.2f}", font=small, fill=ink)
    return charts


def _charts(img: np.ndarray, rng: np.random.Generator, boxes: list[tuple[int, int, int, int]]) -> None:
    """Line charts drawn with OpenCV's anti-aliased lines into ``img`` (in place)."""
    for x0, y0, x1, y1 in boxes:
        xs = np.linspace(x0, x1, 40)
        for _ in range(int(rng.integers(1, 4))):
            ys = y1 - (y1 - y0) * (0.5 + 0.4 * np.sin(np.cumsum(rng.normal(0, 0.3, 40))))
            pts = np.stack([xs, ys], 1).astype(np.int32)[None]
            colour = tuple(int(v) for v in rng.integers(0, 220, 3))
            cv2.polylines(img, pts, False, colour, int(rng.integers(2, 6)), cv2.LINE_AA)
        cv2.line(img, (x0, y1), (x1, y1), (90, 90, 90), 2, cv2.LINE_AA)


def render_screen(seed: int, size: tuple[int, int] = RENDER_SIZE) -> np.ndarray:
    """A synthetic shared screen (RGB uint8, ``size`` = (width, height)), deterministic in ``seed``."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, 0x5C])
    layout = LAYOUTS[seed % len(LAYOUTS)]
    w, h = size
    dark = layout == "code"
    bg = _colour(rng, 28, 40) if dark else _colour(rng, 236, 256)
    canvas = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(canvas)
    # window chrome: title bar with buttons and a tab strip
    draw.rectangle((0, 0, w, 90), fill=_colour(rng, 50, 70) if dark else _colour(rng, 205, 230))
    for i in range(3):
        draw.ellipse(
            (24 + 44 * i, 28, 56 + 44 * i, 60), fill=((237, 106, 94), (245, 191, 79), (98, 197, 84))[i]
        )
    tab = _font("DejaVuSans.ttf", 26)
    for i in range(int(rng.integers(2, 6))):
        draw.text(
            (200 + 330 * i, 30),
            " ".join(_words(rng, 2)),
            font=tab,
            fill=(200, 200, 200) if dark else (40, 40, 40),
        )
    charts = []
    if layout == "document":
        _document(draw, rng, size)
    elif layout == "code":
        _code(draw, rng, size)
    else:
        charts = _dashboard(draw, rng, size)
    img = np.array(canvas)
    _charts(img, rng, charts)
    return img


def render_scan(seed: int, size: tuple[int, int] = SCAN_SIZE) -> np.ndarray:
    """A digitally clean scanned page (RGB uint8, ``size`` = (width, height)), deterministic in ``seed``.

    Black text on a page that is exactly white (255), as OCR tools and fax-like scanners write them: even seeds
    are bilevel (thresholded: only 0 and 255), odd seeds keep anti-aliased grey edges. After the pool's shrink
    most of the page is still exactly 255 and the ink exactly 0, so noise or codec damage on such a page is
    clipped on one side, which photographs and the rendered screens never show.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, 0x5CA])
    w, h = size
    canvas = Image.new("L", size, 255)
    draw = ImageDraw.Draw(canvas)
    body = ("DejaVuSerif.ttf", "DejaVuSans.ttf", "DejaVuSansMono.ttf")[int(rng.integers(0, 3))]
    bold = body.replace(".ttf", "-Bold.ttf")
    margin = int(rng.integers(100, 300))
    title = _font(bold, int(rng.integers(50, 90)))
    draw.text((margin, margin), " ".join(_words(rng, 4)), font=title, fill=0)
    fonts = [_font(body, int(v)) for v in rng.integers(26, 52, size=2)]
    _paragraphs(draw, rng, (margin, margin + title.size * 2, w - margin, h - margin), fonts, 0, 0)
    page = np.array(canvas)
    if seed % 2 == 0:
        page = np.where(page < 128, 0, 255).astype(np.uint8)
    return np.repeat(page[..., None], 3, axis=2)
