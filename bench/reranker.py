"""Reranking speed: what the passage reranker adds to a question, and spanqa's reranker against
Haystack's SentenceTransformersSimilarityRanker on the same pairs.

    python bench/reranker.py --index PARTA --reader ../shared/data/models/minilm-l6-squad-a16 \\
        --reranker ../shared/data/models/minilm-l6-rerank-a16 --squad ../shared/data/squad/dev-v1.1-part-a.json \\
        --questions 40 --passages 10 --repeats 3

Per question, side by side in one process and taking turns question by question (the order rotates):
 - the question without reranking: DocumentQA.ask reading the top `--passages` retrieved;
 - the question with reranking: the top `--candidates` reranked first (int8 and float32);
 - the reranker alone on the same `--candidates` passages: spanqa's PassageReranker (float32 and
   int8) and Haystack's ranker (sentence-transformers CrossEncoder, float32, batch 16 as it ships).
Each figure is the median over questions of the median over repetitions; ratios are of those medians.
The questions are every Nth of articles 20-23 (never used to choose a setting).

`--reader-arch DIR` (a config.json + tokenizer, such as ../shared/data/models/distilbert-base-cased-
distilled-squad-arch) reads with a random-weight model of that architecture instead of `--reader`:
what reranking adds beside the default reader, whose weights cannot be downloaded here (reading
every passage, time does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from haystack import Document  # noqa: E402

from spanqa import DocumentQA  # noqa: E402
from spanqa.pipelines.evaluation import load_squad  # noqa: E402
from spanqa.reader import PassageReranker  # noqa: E402
from spanqa.settings import RerankSettings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reader import build_model_dir  # noqa: E402  (bench/reader.py: the random-weight reader it times)


def questions_of(squad_file: str, articles: str, count: int) -> list[str]:
    squad = load_squad(squad_file)
    first, last = (int(part) for part in articles.split(":"))
    titles = list(dict.fromkeys(squad.titles))[first:last]
    chosen = [q.question for q in squad.questions if squad.titles[q.context_index] in titles]
    return chosen[:: max(1, len(chosen) // count)][:count]


def haystack_ranker(model: str):
    from haystack_integrations.components.rankers.sentence_transformers import (
        SentenceTransformersSimilarityRanker,
    )

    ranker = SentenceTransformersSimilarityRanker(model=model, device=None, top_k=100, scale_score=False)
    ranker.warm_up()
    return ranker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True)
    reader = parser.add_mutually_exclusive_group(required=True)
    reader.add_argument("--reader")
    reader.add_argument("--reader-arch", type=Path, help="a random-weight reader of this architecture")
    parser.add_argument("--reranker", required=True)
    parser.add_argument("--squad", required=True)
    parser.add_argument("--articles", default="20:24")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--candidates", type=int, default=RerankSettings.rerank)
    parser.add_argument("--passages", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    if args.reader_arch is not None:
        folder = tempfile.mkdtemp(prefix="spanqa-bench-reader-")
        args.reader = str(build_model_dir(args.reader_arch, "default", 0, Path(folder)))
    common = {"reader": args.reader, "device": "cpu", "retriever_top_k": args.passages}
    rerank = {"rerank": args.candidates, "reranker": args.reranker}
    engines = {
        "ask": DocumentQA(args.index, **common, rerank=0),
        "ask + rerank int8": DocumentQA(args.index, **common, **rerank, rerank_precision="int8"),
        "ask + rerank float32": DocumentQA(args.index, **common, **rerank, rerank_precision="float32"),
    }
    rerankers = {
        "spanqa float32": PassageReranker(args.reranker, candidates=args.candidates, device="cpu", precision="float32"),
        "spanqa int8": PassageReranker(args.reranker, candidates=args.candidates, device="cpu", precision="int8"),
    }
    for reranker in rerankers.values():
        reranker.warm_up()
    haystack = haystack_ranker(args.reranker)
    for qa in engines.values():
        qa.engine.load()

    questions = questions_of(args.squad, args.articles, args.questions)
    runs: dict[str, callable] = {}
    for name, qa in engines.items():
        runs[name] = lambda q, qa=qa: qa.ask(q)
    for name, reranker in rerankers.items():
        runs[f"rerank: {name}"] = lambda q, docs, r=reranker: r.run(q, docs)
    runs["rerank: haystack float32"] = lambda q, docs: haystack.run(query=q, documents=docs)

    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for number, question in enumerate(questions):
        passages = engines["ask"].search(question, top_k=args.candidates)
        documents = [Document(content=p.text, id=f"{number}-{i}") for i, p in enumerate(passages)]
        names = list(runs)
        names = names[number % len(names):] + names[: number % len(names)]
        per: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.repeats + 1):  # the first round warms caches and is not counted
            for name in names:
                started = time.perf_counter()
                if name.startswith("rerank:"):
                    runs[name](question, documents)
                else:
                    runs[name](question)
                per[name].append(time.perf_counter() - started)
        for name in names:
            seconds[name].append(statistics.median(per[name][1:]))

    medians = {name: statistics.median(times) for name, times in seconds.items()}
    figures = {
        "reader": "random-weight " + args.reader_arch.name if args.reader_arch is not None else args.reader,
        "questions": len(questions), "candidates": args.candidates, "passages": args.passages,
        "median_seconds": {name: round(value, 4) for name, value in medians.items()},
        "ask_rerank_int8_over_ask": round(medians["ask + rerank int8"] / medians["ask"], 3),
        "ask_rerank_float32_over_ask": round(medians["ask + rerank float32"] / medians["ask"], 3),
        "haystack_over_spanqa_float32": round(medians["rerank: haystack float32"] / medians["rerank: spanqa float32"], 3),
        "haystack_over_spanqa_int8": round(medians["rerank: haystack float32"] / medians["rerank: spanqa int8"], 3),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
