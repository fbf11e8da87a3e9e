"""Retrieval: chunks for a question. The embedders (`embedding`: sentence-transformers or int8 ONNX
Runtime), dense retrieval over the store (`retriever`), and hybrid retrieval fusing the dense and
BM25 rankings (`hybrid`, `fusion`), as Haystack components.
"""
