"""The `spanqa` command: index files, ask questions, search passages, manage and evaluate an index, serve it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from spanqa import defaults
from spanqa.records import Answer, IndexReport, Passage
from spanqa.indexing.ocr.engines import OCR_MODES
from spanqa.pipelines.cli_common import (
    meta_option,
    non_negative,
    positive_int,
    progress,
    reader_settings,
    score,
    shows_progress,
    threshold,
    tokens_or_all,
)
from spanqa.pipelines.cli_errors import report_error

_WHITESPACE = re.compile(r"\s+")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spanqa", description="Answer questions from your documents by quoting the exact span."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, models: bool = True) -> None:
        sub.add_argument("--index", required=True, metavar="DIR", help="the index directory")
        if models:
            sub.add_argument(
                "--device", default=defaults.DEVICE, choices=["auto", "cpu", "cuda"],
                help="where models run (default: %(default)s: a CUDA GPU when torch sees one, else the CPU)",
            )
        sub.add_argument("--json", action="store_true", help="print a machine-readable JSON report")

    def filters(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--file", action="append", metavar="PATH",
                         help="only passages of this file (repeat for several)")
        sub.add_argument("--page", type=positive_int, action="append", metavar="N",
                         help="only passages of page N (repeat for several)")
        sub.add_argument("--filter", metavar="JSON",
                         help='a Haystack filter, e.g. \'{"field": "meta.file_type", "operator": "==", "value": "pdf"}\'')

    def retrieval(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--retrieval", choices=["hybrid", "dense", "keyword"], default=defaults.RETRIEVAL_MODE,
                         help="how passages are found: embedding and BM25 rankings fused, or one of them "
                         "(default: %(default)s)")
        sub.add_argument("--dense-weight", type=score, default=defaults.HYBRID_DENSE_WEIGHT, metavar="W",
                         help="share of the embedding ranking in the hybrid score, 0..1 (default: %(default)s)")

    def embedding_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--embedder-precision", choices=["auto", "float32", "int8"],
                         default=defaults.EMBEDDER_PRECISION,
                         help="how a new index is embedded: int8 (ONNX Runtime, CPU) or float32 (torch); auto: int8 "
                         "on the CPU, float32 on a GPU (default: %(default)s; an existing index keeps its own)")
        sub.add_argument("--embed-max-tokens", type=tokens_or_all, default=defaults.EMBED_MAX_TOKENS, metavar="N",
                         help="word pieces of each chunk a new index's embedder reads; 'all': as many as the model "
                         "takes, best for --retrieval dense (default: %(default)s; BM25 always reads every word)")

    def reader_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--reader", default=defaults.READER_MODEL, metavar="MODEL",
                         help="extractive QA model, hub id or local directory (default: %(default)s)")
        sub.add_argument("--fast", action="store_true",
                         help="the reader's CPU fast mode: int8 ONNX Runtime; "
                         "faster, close to but not identical with the exact answers")
        sub.add_argument("--max-answer-length", type=positive_int, default=defaults.MAX_ANSWER_LENGTH, metavar="N",
                         help="longest answer in reader tokens (default: %(default)s)")
        sub.add_argument("--max-seq-length", type=positive_int, default=defaults.MAX_SEQ_LENGTH, metavar="N",
                         help="reader tokens per (question, passage window) (default: %(default)s)")
        sub.add_argument("--doc-stride", type=positive_int, default=defaults.DOC_STRIDE, metavar="N",
                         help="tokens shared by consecutive windows of a long passage (default: %(default)s)")
        sub.add_argument("--rank-weight", type=non_negative, default=defaults.READER_RANK_WEIGHT, metavar="W",
                         help="how much a passage's retrieval rank counts against its answers: W * ln(1 + rank) "
                         "off the logit sum; 0: the reader alone (default: %(default)s)")
        sub.add_argument("--adaptive", action="store_true",
                         help="read the passages a few at a time and stop once no unread one could outrank the "
                         "best answer (needs the index's answer calibration: spanqa calibrate)")

    index = commands.add_parser("index", help="index files and folders (recursively)")
    index.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to index")
    index.add_argument(
        "--embedder", metavar="MODEL",
        help=f"embedding model, hub id or local directory (default: {defaults.EMBEDDER_MODEL}; "
        "an existing index keeps the one it was built with)",
    )
    index.add_argument("--password", help="password for encrypted PDFs (the empty password is always tried)")
    index.add_argument(
        "--passwords", metavar="FILE",
        help='JSON object of per-file passwords, keyed by file name, path or absolute path: {"a.pdf": "pw"}',
    )
    index.add_argument(
        "--reader", default=defaults.READER_MODEL, metavar="MODEL",
        help="the reader model whose tokenizer sizes the chunks of a new index (default: %(default)s; "
        "without it, sizes are estimated from words)",
    )
    index.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="parser processes (default: the number of CPUs, at most 4)")
    index.add_argument("--timeout", type=float, default=defaults.PARSE_TIMEOUT_S, metavar="SECONDS",
                       help="time one file may take to parse (default: %(default)s)")
    index.add_argument("--memory-mb", type=positive_int, default=defaults.PARSE_MEMORY_MB, metavar="MB",
                       help="memory one parser process may use (default: %(default)s)")
    index.add_argument("--max-file-mb", type=float, default=defaults.MAX_FILE_MB, metavar="MB",
                       help="larger files are reported, not parsed (default: %(default)s)")
    index.add_argument("--ocr", choices=OCR_MODES, default=defaults.OCR,
                       help="OCR for PDF pages without a usable text layer: auto (the built-in engine, "
                       "RapidOCR), rapidocr, tesseract (when installed) or off (default: %(default)s)")
    index.add_argument(
        "--meta", action="append", type=meta_option, metavar="KEY=VALUE",
        help="metadata for every chunk of every file of this run, filterable as meta.KEY (repeatable; a key "
        "given twice is a list, e.g. two tags); VALUE is a number, true, false or null when it reads as one, "
        "else text. KEY: letters, digits, _ and -",
    )
    index.add_argument(
        "--meta-file", metavar="FILE",
        help='JSON object of per-file metadata keyed by file path, folder or glob pattern (relative to FILE\'s '
        'folder; ** for any depth), e.g. {"reports/**/*.pdf": {"department": "finance", "tag": ["q3"]}}; '
        "its keys override --meta's",
    )
    index.add_argument("--sync", action="store_true",
                       help="also remove from the index the files under PATH that are no longer there")
    index.add_argument("--index-type", choices=["flat", "hnsw", "ivf", "auto"], default=None,
                       help=f"vector index of a new index (default: {defaults.INDEX_TYPE}; "
                       "an existing index keeps its own)")
    index.add_argument("--shards", type=positive_int, default=None, metavar="N",
                       help="split a new index into N shards, files placed by a hash of their path "
                       "(searches fan out and merge); an existing index keeps its own")
    index.add_argument(
        "--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
        help="parse and embed on a Ray cluster (needs pip install 'spanqa[ray]'): alone, the local Ray instance "
        "(started for the run when none runs); with ADDRESS (HOST:6379), that cluster. Give it after the paths",
    )
    embedding_options(index)
    common(index)

    ask = commands.add_parser("ask", help="answer a question from the index")
    ask.add_argument("question", metavar="QUESTION")
    reader_options(ask)
    ask.add_argument(
        "--embedder", metavar="MODEL", help="must be the embedder the index was built with (default: that one)"
    )
    ask.add_argument("--top-k", type=positive_int, default=defaults.ANSWER_TOP_K, metavar="N",
                     help="answers to print (default: %(default)s)")
    ask.add_argument("--passages", type=positive_int, default=defaults.RETRIEVER_TOP_K, metavar="N",
                     help="retrieved passages the reader reads (default: %(default)s)")
    ask.add_argument("--threshold", type=threshold, default=defaults.SCORE_THRESHOLD, metavar="SCORE|auto",
                     help="answers scoring below SCORE (0..1) are not shown; auto: answers the index's answer "
                     "calibration finds unlikely are not shown (default: show the best found)")
    filters(ask)
    retrieval(ask)
    common(ask)

    search = commands.add_parser("search", help="list the passages most related to a query, without reading them")
    search.add_argument("query", metavar="QUERY")
    search.add_argument(
        "--embedder", metavar="MODEL", help="must be the embedder the index was built with (default: that one)"
    )
    search.add_argument("--top-k", type=positive_int, default=defaults.SEARCH_TOP_K, metavar="N",
                        help="passages to print (default: %(default)s)")
    filters(search)
    retrieval(search)
    common(search)

    remove = commands.add_parser("remove", help="remove files (or everything under folders) from the index")
    remove.add_argument("paths", nargs="+", metavar="PATH", help="indexed files or folders")
    common(remove, models=False)

    listing = commands.add_parser("list", help="list the indexed files with pages, chunks and when indexed")
    common(listing, models=False)

    compact = commands.add_parser(
        "compact", help="rewrite the index's vectors as one segment, without deleted ones (commits merge on their own)"
    )
    common(compact, models=False)

    from spanqa.pipelines.check_cli import add_command as add_check_command

    add_check_command(commands)
    from spanqa.pipelines.measure_cli import add_commands as add_measure_commands

    add_measure_commands(commands, reader_options, retrieval, embedding_options)
    from spanqa.service.cli import add_commands

    add_commands(commands, reader_options, retrieval, positive_int)
    return parser


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


def _print_answers(question: str, answers: list[Answer], on_terminal: bool) -> None:
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


def _print_passages(query: str, passages: list[Passage]) -> None:
    if not passages:
        print(f"No passage found for: {query}")
        return
    for rank, passage in enumerate(passages, start=1):
        print(f"{rank}. {_display_path(passage.source)}, page {passage.page}   (score {passage.score:.3f})")
        text = _one_line(passage.text)
        print(f"   {text[:300]}{'…' if len(text) > 300 else ''}")
        print()


def _print_index_report(report: IndexReport) -> None:
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


def _quiet_libraries() -> None:
    # Per-file problems are reported by spanqa itself; library chatter would bury them.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass


def _read_passwords(path: str | None) -> dict[str, str] | None:
    """The --passwords file: a JSON object mapping file names or paths to passwords."""
    if path is None:
        return None
    from spanqa.errors import ConfigError

    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the passwords file '{path}': {exc}") from exc
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ConfigError(f"the passwords file '{path}' must hold one JSON object of strings: {{\"file.pdf\": \"password\"}}")
    return mapping


def _index_meta(args: argparse.Namespace):
    """--meta and --meta-file as the `meta` of DocumentQA.index."""
    from spanqa.indexing.ingest.file_meta import MetaFile, combined, gathered

    return combined(gathered(args.meta), None if args.meta_file is None else MetaFile(args.meta_file))


def _run_index(args: argparse.Namespace, qa) -> int:
    from spanqa.errors import ConfigError
    from spanqa.indexing import discover_files

    if args.ray is not None and args.ray != "local" and Path(args.ray).exists():
        # `--ray PATH...` reads the first path as the cluster's address.
        raise ConfigError(
            f"--ray took '{args.ray}' for a cluster address, but it is a path: give --ray after the paths, "
            "or --ray=ADDRESS"
        )
    missing = [path for path in args.paths if not Path(path).expanduser().exists()]
    if missing and not args.sync:  # --sync: a path that is gone removes what was indexed under it
        raise ConfigError(
            f"no such file or folder {', '.join(repr(str(path)) for path in missing)}: nothing was indexed"
        )
    meta = _index_meta(args)
    shown = shows_progress(args)
    total = len(discover_files(args.paths)[0]) if shown else 0
    with progress(total, "file", "indexing", shown) as advance:
        report = qa.index(
            args.paths,
            password=args.password,
            passwords=_read_passwords(args.passwords),
            workers=args.workers,
            timeout_s=args.timeout,
            memory_mb=args.memory_mb,
            max_file_mb=args.max_file_mb,
            on_file_done=advance,
            sync=args.sync,
            ocr=args.ocr,
            meta=meta,
            ray=args.ray,
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print_index_report(report)
    return 0 if report.indexed or not report.skipped else 1


def _filters(args: argparse.Namespace) -> dict | None:
    """--file, --page and --filter as one Haystack filter (all must hold)."""
    from spanqa.errors import ConfigError

    conditions = []
    if args.file:
        sources = [str(Path(name).expanduser().resolve()) for name in args.file]
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


def _run_ask(args: argparse.Namespace, qa) -> int:
    answers = qa.ask(args.question, top_k=args.top_k, filters=_filters(args))
    if args.json:
        print(json.dumps({"question": args.question, "answers": [a.to_json() for a in answers]}, indent=2))
    else:
        _print_answers(args.question, answers, on_terminal=sys.stdout.isatty())
    return 0


def _run_search(args: argparse.Namespace, qa) -> int:
    passages = qa.search(args.query, top_k=args.top_k, filters=_filters(args))
    if args.json:
        print(json.dumps({"query": args.query, "passages": [p.to_json() for p in passages]}, indent=2))
    else:
        _print_passages(args.query, passages)
    return 0


def _run_remove(args: argparse.Namespace, qa) -> int:
    from spanqa.pipelines.api import indexed_under

    removed = qa.remove(args.paths)
    unmatched = [path for path in args.paths if not any(indexed_under(f.source, path) for f in removed)]
    if args.json:
        print(json.dumps({"removed": [f.to_json() for f in removed], "not_indexed": unmatched}, indent=2))
    else:
        for stored in removed:
            print(f"removed {_display_path(stored.source)} ({stored.chunks} chunk(s))")
        for path in unmatched:
            print(f"not in the index: {path}")
    return 0 if not unmatched else 1


def _run_list(args: argparse.Namespace, qa) -> int:
    files = qa.files()
    if args.json:
        print(json.dumps({"files": [f.to_json() for f in files]}, indent=2))
        return 0
    for stored in files:
        print(f"{_display_path(stored.source)}  {stored.pages} page(s)  {stored.chunks} chunk(s)  indexed {stored.indexed_at}")
    print(f"{len(files)} file(s), {sum(f.pages for f in files)} page(s), {sum(f.chunks for f in files)} chunk(s)")
    return 0


def _run_compact(args: argparse.Namespace, qa) -> int:
    report = qa.compact()
    if args.json:
        print(json.dumps({"bytes_written": report.bytes_written, "segments_merged": report.segments_merged}, indent=2))
    else:
        print(f"compacted: {report.segments_merged} segment(s) into one, {report.bytes_written / 2**20:.1f} MiB written")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        if args.command in ("check", "backup"):  # before the models' libraries load: neither needs them
            from spanqa.pipelines.check_cli import run_backup, run_check

            return run_check(args) if args.command == "check" else run_backup(args)
        from spanqa.pipelines.api import DocumentQA, model_reference

        for option in ("reader", "embedder"):  # a path that is not there, named before anything loads
            if isinstance(getattr(args, option, None), str):
                model_reference(getattr(args, option), f"--{option}")
        if args.command in ("eval", "calibrate"):
            from spanqa.pipelines.measure_cli import run_calibrate, run_eval

            return run_eval(args) if args.command == "eval" else run_calibrate(args)
        if args.command in ("serve", "token"):
            from spanqa.service.cli import run_serve, run_token

            return run_serve(args) if args.command == "serve" else run_token(args)
        options = {}
        if args.command in ("index", "ask", "search"):
            options.update(embedder=args.embedder, device=args.device)
        if args.command in ("ask", "search"):
            options.update(retrieval=args.retrieval, dense_weight=args.dense_weight)
        if args.command == "index":
            options.update(
                reader=args.reader, index_type=args.index_type, shards=args.shards,
                embedder_precision=args.embedder_precision,
                embed_max_tokens=args.embed_max_tokens,
            )
        if args.command == "ask":
            options.update(retriever_top_k=args.passages, score_threshold=args.threshold, **reader_settings(args))
        qa = DocumentQA(Path(args.index), **options)
        runner = {
            "index": _run_index, "ask": _run_ask, "search": _run_search, "remove": _run_remove, "list": _run_list, "compact": _run_compact,
        }[args.command]
        return runner(args, qa)
    except KeyboardInterrupt:
        print("spanqa: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one plain line, never a traceback (SPANQA_DEBUG=1 shows it)
        return report_error(exc, getattr(args, "index", None))


if __name__ == "__main__":
    sys.exit(main())
