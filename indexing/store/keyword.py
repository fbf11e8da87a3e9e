"""Keyword (BM25) search over the store's chunks: SQLite FTS5 in the store's own database.

The full-text table `chunks_fts` indexes each chunk's text and its file path (so a document's name
and folders are searchable words too) with the Porter stemmer. It is an external-content table
kept up to date by triggers on `chunks`, so it changes in the same transaction as the chunks: it
is never out of step with them, after a crash included, and costs no second copy of the text.
Ranking is SQLite's `bm25()` (k1 = 1.2, b = 0.75); a chunk's keyword score is minus that value
(higher is better, unbounded).

Questions become an OR of their words without English stop words: any shared content word can
match, and frequent function words neither slow the search down nor add noise.

Chinese, Japanese and Korean. FTS5's tokenizer makes a whole run of CJK characters one word (Chinese
and Japanese put no spaces between words), so a phrase from inside a run would never match. The
contentless table `chunks_cjk` indexes the CJK runs of the chunks that have any, as overlapping
character pairs plus each run's last character ("合同编号" -> 合同 同编 编号 号); triggers fill it in
the same transactions as `chunks_fts` (with the SQL function `spanqa_cjk_bigrams`, which every
connection of the store registers), and chunks without CJK add nothing to it. A CJK run of the
question becomes the phrase of its pairs (a single character: the words starting with it), so any
substring of a run is found; the question's other words search `chunks_fts`. When a question has
both, each table's ranking is min-max scaled and the two are averaged (as hybrid retrieval fuses
its sides), so the scores are 0..1 there. An index made before the table has it created and filled
by its next writer (`ensure_cjk_index`); until then its CJK runs match only as whole words.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from spanqa.indexing.store.rank_fusion import fuse_rankings

FTS_TABLE = "chunks_fts"
# Weights of the indexed columns in bm25(): chunk text, file path (both tables).
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

CJK_TABLE = "chunks_cjk"
CJK_FUNCTION = "spanqa_cjk_bigrams"
# Han (unified, extensions, compatibility), the kana letters (not the punctuation of their blocks:
# ・ and ゠ separate words), Hangul, and 々〆〇. Code point ranges, so that the SQL test in the
# triggers and the Python segmentation agree on every character.
CJK_RANGES = (
    ("\u1100", "\u11ff"), ("\u3005", "\u3007"), ("\u3041", "\u3096"), ("\u309d", "\u309f"),
    ("\u30a1", "\u30fa"), ("\u30fc", "\u30ff"), ("\u3131", "\u318e"), ("\u3400", "\u4dbf"),
    ("\u4e00", "\u9fff"), ("\uac00", "\ud7a3"), ("\uf900", "\ufaff"), ("\uff66", "\uff9f"),
    ("\U00020000", "\U0003134f"),
)
_CJK_CLASS = "[" + "".join(f"{low}-{high}" for low, high in CJK_RANGES) + "]"
_CJK_CHAR = re.compile(_CJK_CLASS)
_CJK_WORD = re.compile(_CJK_CLASS + "+")
# In chunk text, white space between CJK characters does not end a run: OCR and line wrapping put
# spaces and breaks inside words of languages that write none.
_CJK_TEXT_RUN = re.compile(_CJK_CLASS + r"(?:\s*" + _CJK_CLASS + ")*")
_SPACE = re.compile(r"\s+")
# The CJK table's share of the fused score of a query with both kinds of words: equal, as neither
# ranking is more telling than the other.
MIXED_QUERY_CJK_WEIGHT = 0.5


def _has_cjk(row: str) -> str:
    """SQL: whether the chunk `row` (a table or trigger row name) has CJK characters in its text or path."""
    pattern = "*" + _CJK_CLASS + "*"
    return f"({row}.content GLOB '{pattern}' OR {row}.source GLOB '{pattern}')"


def _add(row: str) -> str:
    return f"INSERT INTO {CJK_TABLE}(rowid, content, source) SELECT {row}.id, {_pairs(row)}"


def _remove(row: str) -> str:
    # A contentless table forgets a row only when given exactly the words it indexed for it.
    return f"INSERT INTO {CJK_TABLE}({CJK_TABLE}, rowid, content, source) SELECT 'delete', {row}.id, {_pairs(row)}"


def _pairs(row: str) -> str:
    return f"{CJK_FUNCTION}({row}.content), {CJK_FUNCTION}({row}.source)"


CJK_SCHEMA = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {CJK_TABLE} USING fts5(content, source, content='', tokenize='unicode61')",
    f"CREATE TRIGGER IF NOT EXISTS chunks_cjk_insert AFTER INSERT ON chunks WHEN {_has_cjk('new')} "
    f"BEGIN {_add('new')}; END",
    f"CREATE TRIGGER IF NOT EXISTS chunks_cjk_delete AFTER DELETE ON chunks WHEN {_has_cjk('old')} "
    f"BEGIN {_remove('old')}; END",
    # One trigger, removal first: the new words must not be removed again with the old ones.
    f"CREATE TRIGGER IF NOT EXISTS chunks_cjk_update AFTER UPDATE OF content, source ON chunks BEGIN "
    f"{_remove('old')} WHERE {_has_cjk('old')}; {_add('new')} WHERE {_has_cjk('new')}; END",
)

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


def cjk_bigrams(text: str | None) -> str | None:
    """The words `chunks_cjk` indexes for `text`: each CJK run's overlapping character pairs, then its
    last character (so that a single character is found too). Changing what this returns for a
    stored text would leave rows the delete trigger cannot remove: it needs the table rebuilt."""
    if text is None:
        return None
    words: list[str] = []
    for match in _CJK_TEXT_RUN.finditer(text):
        run = _SPACE.sub("", match.group())
        words += [run[i : i + 2] for i in range(len(run) - 1)]
        words.append(run[-1])
    return " ".join(words)


def cjk_match_expression(text: str) -> str | None:
    """An FTS5 MATCH expression over `chunks_cjk`: any of the query's CJK runs as a substring; None
    when it has none. Runs the query separates by spaces or punctuation are searched apart."""
    phrases = []
    for run in dict.fromkeys(_CJK_WORD.findall(text)):
        if len(run) == 1:
            phrases.append(f'"{run}"*')  # the pairs starting with it, or it ending a run
        else:
            phrases.append('"' + " ".join(run[i : i + 2] for i in range(len(run) - 1)) + '"')
    return " OR ".join(phrases) if phrases else None


def has_cjk_table(connection: sqlite3.Connection) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return connection.execute(query, (CJK_TABLE,)).fetchone() is not None


def ensure_cjk_index(connection: sqlite3.Connection) -> None:
    """Creates `chunks_cjk` and its triggers where the database lacks them (an index made before
    them), filled from the chunks already stored. Runs inside the caller's write transaction, so the
    table appears filled, or not at all."""
    if has_cjk_table(connection):
        return
    for statement in CJK_SCHEMA:
        connection.execute(statement)
    connection.execute(f"{_add('chunks')} FROM chunks WHERE {_has_cjk('chunks')}")


def keyword_ranking(
    connection: sqlite3.Connection, query: str, top_k: int, where: tuple[str, list[Any]] | None
) -> list[tuple[int, float]]:
    """(chunk id, keyword score) of the `top_k` chunks best matching `query`, best first, among those
    the SQL condition `where` (with its parameters) selects; [] when the query has no searchable word."""
    rankings = []
    if _CJK_CHAR.search(query) and has_cjk_table(connection):
        rankings.append(_ranking(connection, CJK_TABLE, cjk_match_expression(query), top_k, where))
        query = _CJK_CHAR.sub(" ", query)
    expression = match_expression(query)
    if expression is not None:
        rankings.append(_ranking(connection, FTS_TABLE, expression, top_k, where))
    if len(rankings) < 2:
        return rankings[0] if rankings else []
    return fuse_rankings(rankings[0], rankings[1], MIXED_QUERY_CJK_WEIGHT)[:top_k]


def _ranking(
    connection: sqlite3.Connection, table: str, expression: str, top_k: int, where: tuple[str, list[Any]] | None
) -> list[tuple[int, float]]:
    weights = ", ".join(str(weight) for weight in FTS_COLUMN_WEIGHTS)
    sql = f"SELECT rowid, bm25({table}, {weights}) AS rank FROM {table} WHERE {table} MATCH ?"
    parameters: list[Any] = [expression]
    if where is not None:
        sql += f" AND rowid IN (SELECT id FROM chunks WHERE {where[0]})"
        parameters += where[1]
    sql += " ORDER BY rank LIMIT ?"
    parameters.append(int(top_k))
    return [(row[0], -float(row[1])) for row in connection.execute(sql, parameters)]
