"""Formats: files in, page texts out. Finding the files to index (`extraction.discover_files`),
reading PDF (pypdf, in reading order: `pdf_text` over `spanqa.indexing.layout`; pages without a text
layer through `spanqa.indexing.ocr`), text, Markdown and HTML (`html_text`) page by page
(`extraction.read_pages`), and cleaning PDF text (`cleaning`). Plain Python: the parse workers
import it. It imports nothing of `ingest`, `pages`, `store` or `retrieval`.
"""
