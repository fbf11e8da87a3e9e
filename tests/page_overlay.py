"""Test helpers for the web page's page viewer: highlight boxes read off the screen, mapped back to PDF
points and checked against the words pdfium finds there; PDFs with turned pages and offset crop boxes.

The mapping back is the inverse of what the page does (user space -> image fractions) written again
here, so a box is checked against the PDF itself rather than against the page's own arithmetic; the
canvas ink under each box (see the browser test) checks the image side.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from pdf_factory import build_text_pdf

# Screen boxes are read in fractional CSS pixels; shrink them by this much (points) before asking pdfium
# what lies inside, so a rounding hair on an edge does not pull in the neighbouring glyph.
EDGE_INSET_PT = 0.5


@dataclass(frozen=True)
class PageGeometry:
    """GET /v1/files/{id}/pages/{n}: the crop box in user-space points and the page's clockwise turn."""

    x0: float
    y0: float
    x1: float
    y1: float
    rotation: int

    @classmethod
    def from_json(cls, body: dict) -> PageGeometry:
        box = body["box"]
        return cls(box["x0"], box["y0"], box["x1"], box["y1"], body["rotation"] % 360)

    @property
    def aspect(self) -> float:
        """Width / height of the page image (a quarter turn swaps them)."""
        width, height = self.x1 - self.x0, self.y1 - self.y0
        return height / width if self.rotation in (90, 270) else width / height


def image_point_to_user_space(fx: float, fy: float, geometry: PageGeometry) -> tuple[float, float]:
    """A point given as fractions of the shown image (from its top-left) in PDF user space."""
    width, height = geometry.x1 - geometry.x0, geometry.y1 - geometry.y0
    # u, v: points from the unturned crop box's top-left corner.
    if geometry.rotation == 0:
        u, v = fx * width, fy * height
    elif geometry.rotation == 90:
        u, v = fy * width, height - fx * height
    elif geometry.rotation == 180:
        u, v = width - fx * width, height - fy * height
    elif geometry.rotation == 270:
        u, v = width - fy * width, fx * height
    else:
        raise ValueError(f"rotation {geometry.rotation} is not a quarter turn")
    return geometry.x0 + u, geometry.y1 - v


def screen_box_to_user_space(
    box: dict, canvas: dict, geometry: PageGeometry
) -> tuple[float, float, float, float]:
    """A box element's client rectangle ({x, y, width, height}) over the canvas's, as (left, bottom,
    right, top) user-space points."""
    corners = [
        image_point_to_user_space((x - canvas["x"]) / canvas["width"], (y - canvas["y"]) / canvas["height"], geometry)
        for x, y in ((box["x"], box["y"]), (box["x"] + box["width"], box["y"] + box["height"]))
    ]
    xs = sorted(point[0] for point in corners)
    ys = sorted(point[1] for point in corners)
    return xs[0], ys[0], xs[1], ys[1]


def text_inside(pdf: Path, page: int, boxes: list[tuple[float, float, float, float]]) -> str:
    """What pdfium reads inside the boxes (in order) on page `page`, whitespace collapsed."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(pdf))
    try:
        textpage = document[page - 1].get_textpage()
        pieces = []
        for left, bottom, right, top in boxes:
            inset_x = min(EDGE_INSET_PT, (right - left) / 4)
            inset_y = min(EDGE_INSET_PT, (top - bottom) / 4)
            pieces.append(textpage.get_text_bounded(left + inset_x, bottom + inset_y, right - inset_x, top - inset_y))
        return collapse(" ".join(pieces))
    finally:
        document.close()


def collapse(text: str) -> str:
    return " ".join(text.split())


def write_turned_pdf(path: Path, pages: list[str], rotations: list[int], crop: tuple[float, float, float, float]) -> Path:
    """A text PDF (pdf_factory) whose page i is shown turned clockwise by rotations[i], every page cropped
    to `crop` (user-space points: left, bottom, right, top)."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import RectangleObject

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(build_text_pdf(pages))))
    for page, rotation in zip(writer.pages, rotations, strict=True):
        page.rotate(rotation)
        page.cropbox = RectangleObject(crop)
    with path.open("wb") as handle:
        writer.write(handle)
    return path
