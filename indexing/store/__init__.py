"""The store: chunks, vectors and metadata in an index directory, crash-safe. `faiss_store` is the
Haystack DocumentStore over its parts (SQLite chunk database with BM25 and filters, immutable FAISS
segments, atomic commits); `shards` splits an index in shards searched as one; `check` and `backup`
verify, repair and copy an index.
"""
