"""How answers are ranked across passages: fits and checks the combined answer score offline.

    # once per article range: retrieve, rerank and read every candidate passage, keep what scoring needs
    python bench/answer_scoring.py collect --index PARTA --squad dev-v1.1-part-a.json --articles 16:20 \\
        --reader READER --reranker RERANKER --candidates 20 --out fit.jsonl
    # every combination of the scoring weights, on the questions collected (choose on 16-19 only)
    python bench/answer_scoring.py fit fit.jsonl
    # one combination on other questions (report on 20-23)
    python bench/answer_scoring.py score held.jsonl --rerank 20 --retrieval-weight 1 --rerank-weight 0.5 ...

`collect` runs the real parts once per question: hybrid retrieval of `--candidates` passages, the
reranker's logit for each, and the reader's best spans in each passage (a passage's spans do not
depend on the others read beside it). `fit` and `score` then replay spanqa's ranking
(`spanqa.reader.reranking` and `spanqa.reader.answers`) for any weights and passage counts without
running a model again, so every combination is scored on the same reads. EM is SQuAD's, of the best
answer; R@1 is the share of questions whose first passage read is from the gold paragraph.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spanqa.pipelines.eval_metrics import best_over_golds
from spanqa.pipelines.evaluation import load_squad
from spanqa.reader.answers import group_spans
from spanqa.reader.reranking import passage_order, passage_priors, passage_scores
from spanqa.reader.span_reader import PassageSpan

_CONTEXT_FOLDER = re.compile(r"[/\\](\d{5})[/\\][^/\\]+$")
PASSAGE_COUNTS = (1, 3, 5, 10)


def collect(args: argparse.Namespace) -> None:
    from spanqa.pipelines.api import DocumentQA
    from spanqa.reader.reranker import PassageReranker
    from spanqa.reader.span_reader import read_passages_batch

    squad = load_squad(args.squad)
    first, last = (int(part) for part in args.articles.split(":"))
    titles = list(dict.fromkeys(squad.titles))[first:last]
    questions = [q for q in squad.questions if squad.titles[q.context_index] in titles][:: args.every]
    qa = DocumentQA(args.index, reader=args.reader, device="cpu")
    reranker = PassageReranker(model=args.reranker, device="cpu", precision=args.precision)
    reranker.warm_up()
    reader = qa.engine.reader
    with open(args.out, "w", encoding="utf-8") as out:
        for number, question in enumerate(questions):
            passages = qa.search(question.question, top_k=args.candidates)
            texts = [p.text for p in passages]
            logits = reranker.score_pairs([question.question] * len(texts), texts)
            spans = read_passages_batch(reader._loaded(), [question.question], [texts], reader.settings, 5)[0]
            record = {
                "id": question.question_id,
                "answers": list(question.answers),
                "gold": [_context_of(p.source) == question.context_index for p in passages],
                "retrieval": [p.score for p in passages],
                "rerank": [float(x) for x in logits],
                "spans": [
                    [[texts[i][s.start : s.end], s.start_logit + s.end_logit] for s in per]
                    for i, per in enumerate(spans)
                ],
            }
            out.write(json.dumps(record) + "\n")
            if number % 50 == 0:
                print(f"{number}/{len(questions)}", file=sys.stderr, flush=True)


def _context_of(source: str) -> int | None:
    match = _CONTEXT_FOLDER.search(source)
    return None if match is None else int(match.group(1))


def load(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class Weights:
    rerank: int  # candidates reranked (0: none)
    retrieval_weight: float
    rank_weight: float
    passage_weight: float
    evidence_weight: float


def reading_order(record: dict, weights: Weights) -> tuple[list[int], list[float | None]]:
    """The candidates' indices in the order the reader gets them, and each one's passage score."""
    reranked = min(weights.rerank, len(record["rerank"]))
    if reranked == 0:
        return list(range(len(record["gold"]))), [None] * len(record["gold"])
    scores = passage_scores(record["rerank"][:reranked], record["retrieval"][:reranked], weights.retrieval_weight)
    order = passage_order(scores) + list(range(reranked, len(record["gold"])))
    return order, [scores[i] if i < reranked else None for i in order]


def score(records: list[dict], weights: Weights, counts=PASSAGE_COUNTS) -> dict:
    """EM per passage count and R@1 of the passages in the order the reader gets them."""
    em = {count: 0.0 for count in counts}
    first_gold = 0
    for record in records:
        order, scores = reading_order(record, weights)
        first_gold += bool(record["gold"][order[0]])
        for count in counts:
            priors = passage_priors(scores[:count], weights.rank_weight, weights.passage_weight)
            texts, spans = [], []
            for position, index in enumerate(order[:count]):
                # each passage is rebuilt from its span texts alone: grouping needs only their texts
                offset, parts, per = 0, [], []
                for text, logit_sum in record["spans"][index]:
                    per.append(PassageSpan(position, offset, offset + len(text), logit_sum, 0.0))
                    parts.append(text)
                    offset += len(text) + 1
                texts.append(" ".join(parts))
                spans.append(per)
            groups = group_spans(spans, texts, merge_same_text=True, score_threshold=None,
                                 passage_priors=priors, evidence_weight=weights.evidence_weight)
            best = "" if not groups else texts[groups[0].best.passage_index][groups[0].best.start : groups[0].best.end]
            em[count] += best_over_golds(best, record["answers"])[0]
    total = max(1, len(records))
    return {"r1": first_gold / total, **{f"em@{count}": 100 * value / total for count, value in em.items()}}


def gold_likelihood(record: dict, weights: Weights) -> float:
    """ln of the share a softmax over the reranked passages' scores gives the gold ones (ln 1e-9 when
    none of them is gold): a smoother measure of an order than R@1's count of firsts."""
    reranked = min(weights.rerank, len(record["rerank"]))
    scores = passage_scores(record["rerank"][:reranked], record["retrieval"][:reranked], weights.retrieval_weight)
    best = max(scores)
    mass = [math.exp(value - best) for value in scores]
    gold = sum(m for m, is_gold in zip(mass, record["gold"], strict=False) if is_gold)
    return math.log(max(gold / sum(mass), 1e-9))


def fit(args: argparse.Namespace) -> None:
    """First the passage order (no reading needed: every retrieval weight and candidate count, chosen
    by the gold passages' mean log-likelihood, which R@1 follows with less noise), then the answer
    ranking's weights under that order, each against reading without reranking."""
    records = load(args.records)
    orders = []
    for rerank, retrieval_weight in itertools.product(args.rerank, (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)):
        weights = Weights(rerank, retrieval_weight, 0.0, 0.0, 0.0)
        first = sum(bool(r["gold"][reading_order(r, weights)[0][0]]) for r in records) / len(records)
        likelihood = sum(gold_likelihood(r, weights) for r in records) / len(records)
        orders.append((likelihood, rerank, retrieval_weight))
        print(json.dumps({"rerank": rerank, "retrieval_weight": retrieval_weight, "r1": round(first, 4),
                          "log_likelihood": round(likelihood, 4)}))
    hybrid = sum(bool(r["gold"][0]) for r in records) / len(records)
    print(json.dumps({"rerank": 0, "r1": round(hybrid, 4)}))
    _, rerank, retrieval_weight = max(orders)
    print(json.dumps({"chosen": {"rerank": rerank, "retrieval_weight": retrieval_weight}}))
    rows = []
    grid = itertools.product((0.0, 1.0, 2.0, 3.0), (0.0, 0.25, 0.5, 1.0, 2.0), (0.0, 0.5, 1.0))
    for rank_weight, passage_weight, evidence_weight in grid:
        for candidates in ((0, rerank) if passage_weight == 0 else (rerank,)):
            weights = Weights(candidates, retrieval_weight if candidates else 0.0, rank_weight, passage_weight,
                              evidence_weight)
            rows.append((weights, score(records, weights)))
    rows.sort(key=lambda row: (row[1]["em@10"], row[1]["em@1"]), reverse=True)
    for weights, figures in rows[: args.show]:
        print(json.dumps({**asdict(weights), **{k: round(v, 3) for k, v in figures.items()}}))


def score_one(args: argparse.Namespace) -> None:
    records = load(args.records)
    weights = Weights(args.rerank, args.retrieval_weight, args.rank_weight, args.passage_weight, args.evidence_weight)
    print(json.dumps({"questions": len(records), **{k: round(v, 3) for k, v in score(records, weights).items()}}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("collect")
    c.add_argument("--index", required=True)
    c.add_argument("--squad", required=True)
    c.add_argument("--articles", required=True, help="FIRST:LAST article numbers (LAST excluded)")
    c.add_argument("--reader", required=True)
    c.add_argument("--reranker", required=True)
    c.add_argument("--precision", default="float32")
    c.add_argument("--candidates", type=int, default=20)
    c.add_argument("--every", type=int, default=1, help="every Nth question")
    c.add_argument("--out", required=True)
    f = commands.add_parser("fit")
    f.add_argument("records")
    f.add_argument("--rerank", type=int, nargs="+", default=[10, 20], help="candidate counts to compare")
    f.add_argument("--show", type=int, default=25)
    s = commands.add_parser("score")
    s.add_argument("records")
    s.add_argument("--rerank", type=int, default=20)
    s.add_argument("--retrieval-weight", type=float, default=1.0)
    s.add_argument("--rank-weight", type=float, default=2.0)
    s.add_argument("--passage-weight", type=float, default=0.5)
    s.add_argument("--evidence-weight", type=float, default=0.0)
    args = parser.parse_args(argv)
    {"collect": collect, "fit": fit, "score": score_one}[args.command](args)


if __name__ == "__main__":
    main()
