"""Keyword (BM25) search over the store's chunks: SQLite FTS5 in the store's own database.

The full-text table `chunks_fts` indexes each chunk's text and its file path (so a document's name
and folders are searchable words too) with the Porter stemmer. It is an external-content table
kept up to date by triggers on `chunks`, so it changes in the same transaction as the chunks: it
is never out of step with them, after a crash included, and costs no second copy of the text.
Ranking is SQLite's `bm25()` (k1 = 1.2, b = 0.75); a chunk's keyword score is minus that value
(higher is better, unbounded).

Questions become an OR of their words without English stop words: any shared content word can
match, and frequent function words neither slow the search down nor add noise.
"""

from __future__ import annotations

import re

FTS_TABLE = "chunks_fts"
# Weights of the indexed columns in bm25(): chunk text, file path.
FTS_COLUMN_WEIGHTS = (1.0, 1.0)

FTS_SCHEMA = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(
    content, source, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO {FTS_TABLE}(rowid, content, source) VALUES (new.id, new.content, new.source);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content, source) VALUES ('delete', old.id, old.content, old.source);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_update AFTER UPDATE ON chunks BEGIN
    INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content, source) VALUES ('delete', old.id, old.content, old.source);
    INSERT INTO {FTS_TABLE}(rowid, content, source) VALUES (new.id, new.content, new.source);
END;
"""

# English function words (the common core of the usual stop lists).
STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she should
    so some such than that the their theirs them themselves then there these they this those through to
    too under until up very was we were what when where which while who whom why will with would you
    your yours yourself yourselves
    """.split()
)

_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(text: str) -> list[str]:
    """The distinct lower-cased words of `text` that are not stop words, in order of appearance."""
    words = (word.lower() for word in _WORD.findall(text))
    return list(dict.fromkeys(word for word in words if word not in STOP_WORDS and word != "_"))


def match_expression(text: str) -> str | None:
    """An FTS5 MATCH expression: any of the query's terms; None when it has none (nothing to search)."""
    terms = query_terms(text)
    if not terms:
        return None
    # Each term quoted: FTS5 then reads it as a plain string (no operators, columns or prefixes).
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
