// Where a highlight box lies on a page image.
//
// A box is in PDF user-space points of its page (origin bottom-left). The page image the server
// renders shows the page's crop box, turned clockwise by the page's /Rotate. Boxes are placed as
// fractions of the image, so the overlay stays right at any displayed size (CSS percentages).

export const ROTATIONS = [0, 90, 180, 270];

export function normalRotation(rotation) {
  const turned = ((Math.round(Number(rotation) / 90) * 90) % 360 + 360) % 360;
  return Number.isFinite(turned) ? turned : 0;
}

// The image's width / height ratio for the page geometry of GET /v1/files/{id}/pages/{n}.
export function imageAspect(geometry) {
  const width = geometry.box.x1 - geometry.box.x0;
  const height = geometry.box.y1 - geometry.box.y0;
  const quarter = normalRotation(geometry.rotation) % 180 === 90;
  return quarter ? height / width : width / height;
}

// A user-space point as fractions (fx, fy) of the shown image, from its top-left corner.
export function pointToFractions(x, y, geometry) {
  const { x0, y0, x1, y1 } = geometry.box;
  const width = x1 - x0;
  const height = y1 - y0;
  // u, v: from the crop box's top-left corner, before the page is turned.
  const u = x - x0;
  const v = y1 - y;
  switch (normalRotation(geometry.rotation)) {
    case 90:
      return { fx: (height - v) / height, fy: u / width };
    case 180:
      return { fx: (width - u) / width, fy: (height - v) / height };
    case 270:
      return { fx: v / height, fy: (width - u) / width };
    default:
      return { fx: u / width, fy: v / height };
  }
}

const clamp = (value) => Math.min(1, Math.max(0, value));

// A highlight box {x0, y0, x1, y1} as {left, top, width, height} fractions of the image (clipped to it),
// or null when it lies wholly outside the crop box.
export function boxToFractions(box, geometry) {
  const a = pointToFractions(box.x0, box.y0, geometry);
  const b = pointToFractions(box.x1, box.y1, geometry);
  const left = clamp(Math.min(a.fx, b.fx));
  const right = clamp(Math.max(a.fx, b.fx));
  const top = clamp(Math.min(a.fy, b.fy));
  const bottom = clamp(Math.max(a.fy, b.fy));
  if (right <= left || bottom <= top) {
    return null;
  }
  return { left, top, width: right - left, height: bottom - top };
}
