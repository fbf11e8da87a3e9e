"""Pages as the service shows them: PDF pages rendered, their geometry, and highlight boxes of answer
spans aligned onto pdfium's glyphs (`highlight`, `glyph_alignment`, `glyphs`) or onto an OCR'd page's
recognised words (`ocr_glyphs`); `pdf_pages.PdfPages` keeps them cached and thread-safe.
"""
