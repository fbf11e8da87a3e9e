"""The one lock around pdfium: pdfium is not thread-safe, so every pdfium call in a process (page
images, glyphs and highlight boxes in `pages.pdf_pages`, rendering for OCR in `ocr.engines`) holds
`PDFIUM_LOCK`.

The lowest module of indexing, beside `layout`: plain Python (pypdfium2 is imported where pages
are drawn, not here), so the parse workers that import OCR pay nothing for it.
"""

from __future__ import annotations

import threading

PDFIUM_LOCK = threading.RLock()
