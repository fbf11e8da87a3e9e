// The page viewer: a PDF page image with the answer's highlight boxes over it.
//
// Page images need the bearer token, so they are fetched with fetch() and drawn on a canvas (an <img>
// could not send the header, and the Content-Security-Policy allows no blob: images). The boxes are
// absolutely placed elements over the canvas, in percentages of it, so they follow any resize.

import { api, seg } from "./api.js";
import { boxToFractions } from "./geometry.js";

const WIDTH_STEP = 200; // page images are fetched in widths of this step, so a resize seldom refetches
const MIN_WIDTH = 200;
const MAX_WIDTH = 3000; // the server's SERVICE_MAX_PAGE_WIDTH
const SHARPER_AFTER = 1.2; // refetch when the shown width outgrows the image by this factor

const $ = (id) => document.getElementById(id);

export class PageViewer {
  constructor(onError) {
    this.onError = onError;
    this.section = $("viewer");
    this.title = $("viewer-title");
    this.note = $("viewer-note");
    this.label = $("page-label");
    this.prev = $("page-prev");
    this.next = $("page-next");
    this.frame = $("page-frame");
    this.canvas = $("page-canvas");
    this.boxes = $("page-boxes");
    this.target = null; // {fileId, name, page, highlight, highlightError, what}
    this.page = 0;
    this.pages = 0;
    this.renderedWidth = 0;
    this.ticket = 0;
    this.opener = null;
    this.prev.addEventListener("click", () => this.show(this.page - 1));
    this.next.addEventListener("click", () => this.show(this.page + 1));
    $("viewer-close").addEventListener("click", () => this.close({ restoreFocus: true }));
    this.section.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        this.close({ restoreFocus: true });
      }
    });
    this.resizeTimer = null;
    new ResizeObserver(() => this.resized()).observe(this.frame);
  }

  get isOpen() {
    return !this.section.hidden;
  }

  // Opens the viewer on `target.page` of the PDF `target.fileId`, boxes drawn on that page only.
  async open(target, opener) {
    this.target = target;
    this.opener = opener ?? null;
    this.pages = 0;
    this.section.hidden = false;
    this.title.textContent = target.name;
    // The server says why it drew no boxes when the page itself was the problem (e.g. over its budget).
    const why = target.highlightError ? ` (${target.highlightError})` : "";
    this.setNote(target.highlight.length === 0
      ? `The ${target.what} could not be placed on the page image${why}: its page is shown without highlight.`
      : "");
    this.title.focus();
    await this.show(target.page);
  }

  // `restoreFocus`: give focus back to the control that opened the viewer (closed by the user).
  close({ restoreFocus = false } = {}) {
    this.ticket += 1;
    this.section.hidden = true;
    this.target = null;
    this.boxes.replaceChildren();
    this.canvas.dataset.state = "closed";
    if (restoreFocus && this.opener && this.opener.isConnected) {
      this.opener.focus();
    }
  }

  setNote(text) {
    this.note.textContent = text;
    this.note.hidden = text === "";
  }

  wantedWidth() {
    const shown = this.frame.clientWidth * (window.devicePixelRatio || 1);
    const stepped = Math.ceil(shown / WIDTH_STEP) * WIDTH_STEP;
    return Math.min(MAX_WIDTH, Math.max(MIN_WIDTH, stepped));
  }

  async show(page) {
    const target = this.target;
    if (target === null || page < 1 || (this.pages > 0 && page > this.pages)) {
      return;
    }
    const ticket = ++this.ticket;
    this.canvas.dataset.state = "loading";
    this.section.setAttribute("aria-busy", "true");
    this.prev.disabled = true;
    this.next.disabled = true;
    try {
      const base = `/v1/files/${seg(target.fileId)}/pages/${seg(page)}`;
      const width = this.wantedWidth();
      const [geometry, response] = await Promise.all([
        api(base), api(`${base}.png?width=${width}`, { raw: true, cache: "default" }),
      ]);
      const bitmap = await createImageBitmap(await response.blob());
      if (ticket !== this.ticket) {
        bitmap.close();
        return;
      }
      this.draw(bitmap, target, page, geometry);
      this.renderedWidth = width;
    } catch (error) {
      if (ticket === this.ticket) {
        this.canvas.dataset.state = "failed";
        this.onError(error);
      }
    } finally {
      if (ticket === this.ticket) {
        this.section.removeAttribute("aria-busy");
        this.prev.disabled = this.page <= 1;
        this.next.disabled = this.pages === 0 || this.page >= this.pages;
      }
    }
  }

  draw(bitmap, target, page, geometry) {
    this.canvas.width = bitmap.width;
    this.canvas.height = bitmap.height;
    this.canvas.getContext("2d").drawImage(bitmap, 0, 0);
    bitmap.close();
    this.page = page;
    this.pages = geometry.pages;
    const boxes = page === target.page ? target.highlight.filter((box) => box.page === page) : [];
    this.placeBoxes(boxes, geometry);
    this.label.textContent = `Page ${page} of ${geometry.pages}`;
    const marked = boxes.length > 0 ? `, the ${target.what} highlighted` : "";
    this.canvas.setAttribute("aria-label", `Page ${page} of ${geometry.pages} of ${target.name}${marked}`);
    Object.assign(this.canvas.dataset, {
      fileId: target.fileId, page: String(page), pages: String(geometry.pages),
      rotation: String(geometry.rotation), state: "ready",
    });
    if (boxes.length > 0) {
      this.reveal(this.boxes.firstElementChild);
    }
  }

  placeBoxes(boxes, geometry) {
    const elements = [];
    for (const box of boxes) {
      const place = boxToFractions(box, geometry);
      if (place === null) {
        continue;
      }
      const element = document.createElement("div");
      element.className = "hl-box";
      Object.assign(element.dataset, {
        page: String(box.page), x0: String(box.x0), y0: String(box.y0), x1: String(box.x1), y1: String(box.y1),
      });
      // CSSOM properties, not a style attribute: allowed under the page's Content-Security-Policy.
      element.style.left = `${place.left * 100}%`;
      element.style.top = `${place.top * 100}%`;
      element.style.width = `${place.width * 100}%`;
      element.style.height = `${place.height * 100}%`;
      elements.push(element);
    }
    this.boxes.replaceChildren(...elements);
  }

  // Brings `element` into sight when it is not (the viewer scrolls by itself on wide screens, the
  // window on narrow ones; scrollIntoView moves whichever needs to).
  reveal(element) {
    const box = element.getBoundingClientRect();
    const view = this.section.getBoundingClientRect();
    const top = Math.max(0, view.top);
    const bottom = Math.min(window.innerHeight, view.bottom);
    if (box.top < top || box.bottom > bottom) {
      element.scrollIntoView({ block: "center", inline: "nearest" });
    }
  }

  resized() {
    if (!this.isOpen || this.canvas.dataset.state !== "ready") {
      return;
    }
    clearTimeout(this.resizeTimer);
    this.resizeTimer = setTimeout(() => {
      const shown = this.frame.clientWidth * (window.devicePixelRatio || 1);
      if (shown > this.renderedWidth * SHARPER_AFTER && this.renderedWidth < MAX_WIDTH) {
        this.show(this.page);
      }
    }, 250);
  }
}
