"""How a sharded index's search compares with one index holding the same chunks (issue #15).

    .venv/bin/python bench/sharded_search.py --shards 2,4,8 [--squad ../shared/data/squad/dev-v1.1-part-a.json]

The 1,048 paragraphs of the shared SQuAD dev part are chunks, written with random unit vectors into
one index and into sharded indexes. A sharded index places whole files: by default each of the 24
articles is one file, so a shard holds a few topics and its word statistics differ from the whole
collection's (the hard case for per-shard BM25); `--file-per-paragraph` makes each paragraph a file,
so shards are random mixtures, as in a large collection.
Every question (5,696) is asked of each by keyword (BM25, `keyword_search`, top 10) and by a random
query vector (`search`, top 10). Reported per shard count: dense, the share of queries whose top 10
(ids and order) equals the single index's; keyword, top-1 agreement, mean overlap of the top-10
sets, and the recall@10 of the question's own paragraph on both sides.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from haystack import Document

DIMENSION = 32
SQUAD = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "squad" / "dev-v1.1-part-a.json"


def load(path: Path, file_per_paragraph: bool) -> tuple[list[Document], list[tuple[str, str]]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    rng = np.random.default_rng(0)
    documents, questions = [], []
    for article in data:
        for number, paragraph in enumerate(article["paragraphs"]):
            identifier = f"{article['title']}#{number}"
            source = f"/squad/{article['title']}/{number}.txt" if file_per_paragraph else f"/squad/{article['title']}.txt"
            documents.append(Document(
                id=identifier, content=paragraph["context"], meta={"source": source, "page": 1},
                embedding=rng.normal(size=DIMENSION).tolist(),
            ))
            questions += [(qa["question"], identifier) for qa in paragraph["qas"]]
    return documents, questions


def main() -> None:
    from spanqa.indexing.store.faiss_store import FaissDocumentStore
    from spanqa.indexing.store.shards import ShardedStore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="2,4,8")
    parser.add_argument("--squad", type=Path, default=SQUAD)
    parser.add_argument("--file-per-paragraph", action="store_true")
    args = parser.parse_args()
    documents, questions = load(args.squad, args.file_per_paragraph)
    work = Path(tempfile.mkdtemp(prefix="spanqa-shards-"))
    single = FaissDocumentStore.create(work / "single", embedder="bench/random", dimension=DIMENSION)
    single.write_documents(documents)
    vectors = np.random.default_rng(1).normal(size=(len(questions), DIMENSION))
    one_keyword = [[d.id for d in single.keyword_search(question, top_k=10)] for question, _ in questions]
    one_dense = [[d.id for d in single.search(vector, top_k=10)] for vector in vectors]
    print(f"{len(documents)} chunks, {len(questions)} questions", file=sys.stderr)
    print("| shards | dense top 10 equal | keyword top-1 equal | keyword top-10 overlap | keyword recall@10 (1 index / sharded) |")
    print("| --- | --- | --- | --- | --- |")
    recall_one = np.mean([gold in found for found, (_, gold) in zip(one_keyword, questions)])
    for count in (int(value) for value in args.shards.split(",")):
        sharded = ShardedStore.create(work / f"sharded-{count}", count, embedder="bench/random", dimension=DIMENSION)
        sharded.write_documents(documents)
        keyword = [[d.id for d in sharded.keyword_search(question, top_k=10)] for question, _ in questions]
        dense = [[d.id for d in sharded.search(vector, top_k=10)] for vector in vectors]
        dense_equal = np.mean([a == b for a, b in zip(dense, one_dense)])
        top1 = np.mean([bool(a) and bool(b) and a[0] == b[0] for a, b in zip(keyword, one_keyword)])
        overlap = np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(keyword, one_keyword)])
        recall = np.mean([gold in found for found, (_, gold) in zip(keyword, questions)])
        print(f"| {count} | {dense_equal:.3f} | {top1:.3f} | {overlap:.3f} | {recall_one:.3f} / {recall:.3f} |")


if __name__ == "__main__":
    main()
