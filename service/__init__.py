"""The knowledge-base service: `spanqa serve`, an HTTP API and a web page over one index.

Models are loaded once and shared by every request; questions that arrive together are read in one
batch; tokens with roles and folder scopes decide who reads what (the scope is applied inside
retrieval); answers on PDF pages come with highlight boxes in page coordinates.
"""
