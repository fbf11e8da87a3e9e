"""Ingest: files to stored, embedded chunks. Files are parsed (read, cleaned, chunked: `parsing`,
`spans`, `chunking`) in worker processes under budgets (`workers`), embedded and written one commit
per batch (`indexer`), locally or on a Ray cluster (`ray_ingest`, `ray_writers`); `file_meta` checks
the metadata users attach to files. `converters.PageConverter` and `chunking.PageChunker` are the
Haystack components over the same steps.
"""
