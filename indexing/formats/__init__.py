"""Formats: files in, page texts out. Finding the files to index (`extraction.discover_files`), reading
PDF (pypdf, in reading order: `layout`, `pdf_text`), text, Markdown and HTML page by page
(`extraction.read_pages`), cleaning PDF text (`cleaning`), and the Haystack component over that
reading (`converters.PageConverter`). Plain Python apart from the component: the parse workers
import it.
"""
