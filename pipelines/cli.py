"""The pipelines' sub-commands of `spanqa`: index, ask, search, remove, list, compact, check, backup,
eval and calibrate. Their options that are settings come from the settings' declarations
(`spanqa.settings.add_options`); each names its handler as "module:function", which spanqa.cli
imports only for the command that runs (the handlers' modules load torch and Haystack)."""

from __future__ import annotations

import argparse

from spanqa import defaults
from spanqa.pipelines.cli_common import (
    counts,
    filter_options,
    index_option,
    json_option,
    meta_option,
    share_of_one,
    whole_number,
)
from spanqa.settings import (
    DeviceSettings,
    EmbedderSettings,
    OcrSettings,
    ParseSettings,
    ReaderSettings,
    RerankSettings,
    RetrievalSettings,
    StoreSettings,
    add_options,
)

RUN = "spanqa.pipelines.cli_run"
CHECK = "spanqa.pipelines.check_cli"
MEASURE = "spanqa.pipelines.measure_cli"
SAME_EMBEDDER = {"help": "must be the embedder the index was built with (None: that one)"}


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds the pipelines' sub-commands to the `spanqa` command's."""
    add_index(commands)
    add_ask(commands)
    add_search(commands)
    add_index_commands(commands)
    add_check(commands)
    add_eval(commands)
    add_calibrate(commands)


def add_index(commands: argparse._SubParsersAction) -> None:
    index = commands.add_parser("index", help="index files and folders (recursively)")
    index.set_defaults(handler=f"{RUN}:run_index")
    index.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to index")
    add_options(index, EmbedderSettings)
    index.add_argument("--password", help="password for encrypted PDFs (the empty password is always tried)")
    index.add_argument(
        "--passwords", metavar="FILE",
        help='JSON object of per-file passwords, keyed by file name, path or absolute path: {"a.pdf": "pw"}',
    )
    add_options(index, ReaderSettings, ["reader"], reader={
        "help": "the reader model whose tokenizer sizes the chunks of a new index (without it, sizes are "
        "estimated from words)"})
    add_options(index, ParseSettings)
    add_options(index, OcrSettings)
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
    add_options(index, StoreSettings)
    index.add_argument(
        "--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
        help="parse and embed on a Ray cluster (needs pip install 'spanqa[ray]'): alone, the local Ray instance "
        "(started for the run when none runs); with ADDRESS (HOST:6379), that cluster. Give it after the paths",
    )
    add_options(index, DeviceSettings)
    index_option(index)
    json_option(index)


def add_ask(commands: argparse._SubParsersAction) -> None:
    ask = commands.add_parser("ask", help="answer a question from the index")
    ask.set_defaults(handler=f"{RUN}:run_ask")
    ask.add_argument("question", metavar="QUESTION")
    add_options(ask, ReaderSettings)
    add_options(ask, EmbedderSettings, ["embedder"], embedder=SAME_EMBEDDER)
    add_options(ask, RetrievalSettings, ["retrieval", "dense_weight", "hybrid_candidates", "retriever_top_k"])
    add_options(ask, RerankSettings)
    filter_options(ask)
    add_options(ask, DeviceSettings)
    index_option(ask)
    json_option(ask)


def add_search(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser("search", help="list the passages most related to a query, without reading them")
    search.set_defaults(handler=f"{RUN}:run_search")
    search.add_argument("query", metavar="QUERY")
    add_options(search, EmbedderSettings, ["embedder"], embedder=SAME_EMBEDDER)
    add_options(search, RetrievalSettings, ["retrieval", "dense_weight", "hybrid_candidates", "search_top_k"])
    add_options(search, RerankSettings)
    filter_options(search)
    add_options(search, DeviceSettings)
    index_option(search)
    json_option(search)


def add_index_commands(commands: argparse._SubParsersAction) -> None:
    """remove, list and compact: commands on the index that load no model."""
    remove = commands.add_parser("remove", help="remove files (or everything under folders) from the index")
    remove.set_defaults(handler=f"{RUN}:run_remove")
    remove.add_argument("paths", nargs="+", metavar="PATH", help="indexed files or folders")
    listing = commands.add_parser("list", help="list the indexed files with pages, chunks and when indexed")
    listing.set_defaults(handler=f"{RUN}:run_list")
    compact = commands.add_parser(
        "compact", help="rewrite the index's vectors as one segment, without deleted ones (commits merge on their own)"
    )
    compact.set_defaults(handler=f"{RUN}:run_compact")
    for sub in (remove, listing, compact):
        index_option(sub)
        json_option(sub)


def add_check(commands: argparse._SubParsersAction) -> None:
    """check and backup: they read the index's files, and load no model."""
    check = commands.add_parser(
        "check", help="verify an index (SQLite integrity, segments against chunks, the manifest); --repair mends it"
    )
    check.set_defaults(handler=f"{CHECK}:run_check")
    index_option(check)
    check.add_argument("--repair", action="store_true",
                       help="bring the index back to its last consistent state (one commit, under the write lock), "
                       "saying what it dropped; files dropped are indexed again by `spanqa index`")
    check.add_argument("--quick", action="store_true",
                       help="SQLite's quick check instead of its full integrity check (faster on a large index)")
    json_option(check)
    backup = commands.add_parser(
        "backup", help="copy a live index (while it is served or indexed) to a new folder, consistent as of one commit"
    )
    backup.set_defaults(handler=f"{CHECK}:run_backup")
    index_option(backup)
    backup.add_argument("destination", metavar="DEST", help="the backup's folder: new, or empty")
    json_option(backup)


def add_eval(commands: argparse._SubParsersAction) -> None:
    evaluation = commands.add_parser(
        "eval", help="measure retrieval recall and answer EM/F1 on a SQuAD-format file of questions"
    )
    evaluation.set_defaults(handler=f"{MEASURE}:run_eval")
    evaluation.add_argument("file", metavar="FILE.json", help="questions, answers and contexts in SQuAD v1.1 format")
    index_option(evaluation, required=False,
                 help="the index to evaluate (with --build: build it there from FILE's contexts)")
    evaluation.add_argument("--build", action="store_true",
                            help="index FILE's contexts first (into --index DIR, else a temporary index)")
    add_options(evaluation, EmbedderSettings)
    add_options(evaluation, ReaderSettings, [info.name for info in ReaderSettings.infos() if info.name != "answer_top_k"],
                score_threshold={"help": "as for ask; the report then gives the share of questions answered"})
    evaluation.add_argument("--passages", type=counts("--passages"), default=(RetrievalSettings.retriever_top_k,),
                            metavar="N[,N...]",
                            help="passages the reader reads end to end, or several counts (1,3,5,10,20: the "
                            "passages are read once and each count scored); recall is also given at each "
                            "(default: %(default)s)")
    stages = evaluation.add_mutually_exclusive_group()
    stages.add_argument("--retrieval-only", action="store_true", help="skip the reader")
    stages.add_argument("--reader-only", action="store_true",
                        help="only the reader, given each question's gold paragraph (no index needed)")
    evaluation.add_argument("--limit", type=whole_number("--limit"), metavar="N", help="evaluate the first N questions")
    add_options(evaluation, RetrievalSettings, ["retrieval", "dense_weight", "hybrid_candidates"])
    add_options(evaluation, RerankSettings)
    add_options(evaluation, DeviceSettings)
    json_option(evaluation)


def add_calibrate(commands: argparse._SubParsersAction) -> None:
    calibration = commands.add_parser(
        "calibrate", help="fit the index's answer calibration (for --threshold auto and --adaptive) and measure it"
    )
    calibration.set_defaults(handler=f"{MEASURE}:run_calibrate")
    calibration.add_argument("file", metavar="FILE.json",
                             help="SQuAD v1.1-format questions whose contexts the index holds (built by eval --build)")
    index_option(calibration, help="the index; the calibration is saved in it")
    # Every passage is read (no --adaptive) and every answer kept (no --threshold): the fit needs them all.
    unused = {"answer_top_k", "score_threshold", "adaptive_reading"}
    add_options(calibration, ReaderSettings, [info.name for info in ReaderSettings.infos() if info.name not in unused])
    add_options(calibration, RetrievalSettings, ["retrieval", "dense_weight", "hybrid_candidates", "retriever_top_k"],
                retriever_top_k={"help": "retrieved passages the reader reads, as ask will"})
    add_options(calibration, RerankSettings)
    calibration.add_argument("--coverage", type=share_of_one("--coverage"), default=defaults.CALIBRATION_TARGET_COVERAGE,
                             metavar="SHARE",
                             help="share of answerable questions --threshold auto keeps answered (default: %(default)s)")
    calibration.add_argument("--limit", type=whole_number("--limit"), metavar="N", help="use the first N questions")
    add_options(calibration, DeviceSettings)
    json_option(calibration)
