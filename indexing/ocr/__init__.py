"""OCR: pages without a usable text layer rendered and recognised (RapidOCR built in, Tesseract when
installed), their words put in reading order as page text (`engines`).
"""
