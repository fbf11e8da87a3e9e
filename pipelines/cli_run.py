"""What `spanqa index`, `ask`, `search`, `remove`, `list` and `compact` do: each builds a DocumentQA
from the command's settings, runs it and prints the result, as text or as JSON (--json).

Imported by spanqa.cli only when one of these commands runs: DocumentQA loads torch and Haystack.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from spanqa.errors import ConfigError
from spanqa.indexing import discover_files
from spanqa.indexing.ingest.file_meta import MetaFile, combined, gathered
from spanqa.paths import indexed_under, user_path
from spanqa.pipelines.api import DocumentQA
from spanqa.pipelines.cli_common import progress, shows_progress
from spanqa.records import Answer, IndexReport, Passage
from spanqa.settings import OcrSettings, ParseSettings, QASettings, from_args

_WHITESPACE = re.compile(r"\s+")


def document_qa(args: argparse.Namespace) -> DocumentQA:
    """The DocumentQA of --index, with the settings the command was given (the others' defaults)."""
    return DocumentQA(user_path(args.index), settings=from_args(QASettings, args))


# -- what the commands print ---------------------------------------------------------------------


def _display_path(source: str) -> str:
    """Relative to the working directory when the file lies under it, else absolute."""
    path = Path(source)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return source


def _one_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _marked_context(answer: Answer, on_terminal: bool) -> str:
    before = _one_line(answer.context[: answer.answer_start_in_context])
    inside = _one_line(answer.context[answer.answer_start_in_context : answer.answer_end_in_context])
    after = _one_line(answer.context[answer.answer_end_in_context :])
    marked = f"\033[1;4m{inside}\033[0m" if on_terminal else f"**{inside}**"
    return f"…{before} {marked} {after}…"


def print_answers(question: str, answers: list[Answer], on_terminal: bool) -> None:
    if not answers:
        print(f"No answer found for: {question}")
        return
    for rank, answer in enumerate(answers, start=1):
        confidence = "" if answer.confidence is None else f", confidence {answer.confidence:.2f}"
        print(f"{rank}. {_one_line(answer.text)}   (score {answer.score:.3f}{confidence})")
        print(f"   {_display_path(answer.source)}, page {answer.page}, characters {answer.start}-{answer.end}")
        print(f"   {_marked_context(answer, on_terminal)}")
        if len(answer.sources) > 1:
            places = ", ".join(f"{_display_path(p.source)} p.{p.page}" for p in answer.sources[1:])
            print(f"   also found in: {places}")
        print()


def print_passages(query: str, passages: list[Passage]) -> None:
    if not passages:
        print(f"No passage found for: {query}")
        return
    for rank, passage in enumerate(passages, start=1):
        print(f"{rank}. {_display_path(passage.source)}, page {passage.page}   (score {passage.score:.3f})")
        text = _one_line(passage.text)
        print(f"   {text[:300]}{'…' if len(text) > 300 else ''}")
        print()


def print_index_report(report: IndexReport) -> None:
    for skipped in report.skipped:
        print(f"skipped {_display_path(skipped.source)}: {skipped.reason}")
    for source in report.removed:
        print(f"removed {_display_path(source)}: no longer there")
    for indexed in report.indexed:
        if indexed.ocr_pages:
            print(f"indexed {_display_path(indexed.source)} with OCR ({indexed.ocr_pages} page(s))")
    removed = f"; removed {len(report.removed)} file(s)" if report.removed else ""
    ocr_pages = sum(f.ocr_pages for f in report.indexed)
    ocr = f" ({ocr_pages} by OCR)" if ocr_pages else ""
    print(
        f"indexed {len(report.indexed)} file(s), {sum(f.pages for f in report.indexed)} page(s){ocr}, "
        f"{report.chunk_count} chunk(s); skipped {len(report.skipped)} file(s){removed}"
    )


# -- index ---------------------------------------------------------------------------------------


def read_passwords(path: str | None) -> dict[str, str] | None:
    """The --passwords file: a JSON object mapping file names or paths to passwords."""
    if path is None:
        return None
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the passwords file '{path}': {exc}") from exc
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ConfigError(f"the passwords file '{path}' must hold one JSON object of strings: {{\"file.pdf\": \"password\"}}")
    return mapping


def _check_index_paths(args: argparse.Namespace) -> None:
    """--ray's address and the paths, checked before any model loads."""
    if args.ray is not None and args.ray != "local" and Path(args.ray).exists():
        # `--ray PATH...` reads the first path as the cluster's address.
        raise ConfigError(
            f"--ray took '{args.ray}' for a cluster address, but it is a path: give --ray after the paths, "
            "or --ray=ADDRESS"
        )
    missing = [path for path in args.paths if not user_path(path).exists()]
    if missing and not args.sync:  # --sync: a path that is gone removes what was indexed under it
        raise ConfigError(
            f"no such file or folder {', '.join(repr(str(path)) for path in missing)}: nothing was indexed"
        )


def run_index(args: argparse.Namespace) -> int:
    _check_index_paths(args)
    qa = document_qa(args)
    meta = combined(gathered(args.meta), None if args.meta_file is None else MetaFile(args.meta_file))
    parsing = from_args(ParseSettings, args)
    shown = shows_progress(args)
    total = len(discover_files(args.paths)[0]) if shown else 0
    with progress(total, "file", "indexing", shown) as advance:
        report = qa.index(
            args.paths,
            password=args.password,
            passwords=read_passwords(args.passwords),
            on_file_done=advance,
            sync=args.sync,
            ocr=from_args(OcrSettings, args).ocr,
            meta=meta,
            ray=args.ray,
            **parsing.to_dict(),
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_index_report(report)
    return 0 if report.indexed or not report.skipped else 1


# -- ask and search ------------------------------------------------------------------------------


def passage_filters(args: argparse.Namespace) -> dict | None:
    """--file, --page and --filter as one Haystack filter (all must hold)."""
    conditions = []
    if args.file:
        sources = [str(user_path(name)) for name in args.file]
        conditions.append({"field": "meta.source", "operator": "in", "value": sources})
    if args.page:
        conditions.append({"field": "meta.page", "operator": "in", "value": list(args.page)})
    if args.filter is not None:
        try:
            conditions.append(json.loads(args.filter))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--filter is not JSON ({exc}): give a Haystack filter object") from exc
    if len(conditions) == 0:
        return None
    return conditions[0] if len(conditions) == 1 else {"operator": "AND", "conditions": conditions}


def run_ask(args: argparse.Namespace) -> int:
    answers = document_qa(args).ask(args.question, top_k=args.answer_top_k, filters=passage_filters(args))
    if args.json:
        print(json.dumps({"question": args.question, "answers": [a.to_json() for a in answers]}, indent=2))
    else:
        print_answers(args.question, answers, on_terminal=sys.stdout.isatty())
    return 0


def run_search(args: argparse.Namespace) -> int:
    passages = document_qa(args).search(args.query, top_k=args.search_top_k, filters=passage_filters(args))
    if args.json:
        print(json.dumps({"query": args.query, "passages": [p.to_json() for p in passages]}, indent=2))
    else:
        print_passages(args.query, passages)
    return 0


# -- remove, list, compact -----------------------------------------------------------------------


def run_remove(args: argparse.Namespace) -> int:
    removed = document_qa(args).remove(args.paths)
    unmatched = [path for path in args.paths if not any(indexed_under(f.source, path) for f in removed)]
    if args.json:
        print(json.dumps({"removed": [f.to_json() for f in removed], "not_indexed": unmatched}, indent=2))
    else:
        for stored in removed:
            print(f"removed {_display_path(stored.source)} ({stored.chunks} chunk(s))")
        for path in unmatched:
            print(f"not in the index: {path}")
    return 0 if not unmatched else 1


def run_list(args: argparse.Namespace) -> int:
    files = document_qa(args).files()
    if args.json:
        print(json.dumps({"files": [f.to_json() for f in files]}, indent=2))
        return 0
    for stored in files:
        print(f"{_display_path(stored.source)}  {stored.pages} page(s)  {stored.chunks} chunk(s)  indexed {stored.indexed_at}")
    print(f"{len(files)} file(s), {sum(f.pages for f in files)} page(s), {sum(f.chunks for f in files)} chunk(s)")
    return 0


def run_compact(args: argparse.Namespace) -> int:
    report = document_qa(args).compact()
    if args.json:
        print(json.dumps({"bytes_written": report.bytes_written, "segments_merged": report.segments_merged}, indent=2))
    else:
        print(f"compacted: {report.segments_merged} segment(s) into one, {report.bytes_written / 2**20:.1f} MiB written")
    return 0
