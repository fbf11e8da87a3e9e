"""The settings' declarations (spanqa.settings): keywords routed to their component, every value
checked wherever it comes from, and the command-line options derived from the same declarations."""

from __future__ import annotations

import argparse

import pytest

from spanqa.errors import ConfigError
from spanqa.settings import (
    ALL_COMPONENTS,
    ChunkingSettings,
    ConnectionSettings,
    DeviceSettings,
    EmbedderSettings,
    ParseSettings,
    QASettings,
    ReaderSettings,
    RetrievalSettings,
    ServiceSettings,
    StoreSettings,
    add_options,
    from_args,
)


def parser_with(*components: type, **overrides) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spanqa-test", exit_on_error=False)
    for component in components:
        add_options(parser, component, **overrides)
    return parser


# -- keywords ------------------------------------------------------------------------------------


def test_keywords_are_routed_to_the_component_that_declares_each():
    settings = QASettings.from_keywords(reader="./my-reader", retriever_top_k=20, device="cpu", shards=2,
                                        embed_max_tokens=None)
    assert settings.reader.reader == "./my-reader"
    assert settings.retrieval.retriever_top_k == 20
    assert settings.device.device == "cpu"
    assert settings.store.shards == 2
    assert settings.embedder.embed_max_tokens is None
    assert settings.reader.max_seq_length == ReaderSettings.max_seq_length == 384  # the rest: their defaults


def test_replace_changes_only_the_named_settings():
    before = QASettings.from_keywords(reader="./my-reader")
    after = before.replace(retrieval="keyword", fast_reader=True)
    assert (after.retrieval.retrieval, after.reader.fast_reader, after.reader.reader) == ("keyword", True, "./my-reader")
    assert before.retrieval.retrieval == "hybrid" and before.reader.fast_reader is False


def test_an_unknown_keyword_names_the_closest_settings():
    with pytest.raises(ConfigError, match=r"unknown setting 'retriever_topk': did you mean 'retriever_top_k'"):
        QASettings.from_keywords(retriever_topk=3)
    with pytest.raises(ConfigError, match="unknown setting 'workers'"):  # a setting, but not the query engine's
        QASettings().replace(workers=2)


@pytest.mark.parametrize(("component", "values", "message"), [
    (ReaderSettings, {"max_answer_length": 0}, "max_answer_length=0 must be a whole number >= 1"),
    (ReaderSettings, {"score_threshold": 1.5}, "score_threshold=1.5 must be a number from 0 to 1"),
    (ReaderSettings, {"doc_stride": 384}, "doc_stride=384 must be smaller than max_seq_length=384"),
    (RetrievalSettings, {"retrieval": "fuzzy"}, "retrieval='fuzzy' must be one of 'hybrid', 'dense', 'keyword'"),
    (RetrievalSettings, {"dense_weight": True}, "dense_weight=True must be a number from 0 to 1"),
    (DeviceSettings, {"device": "gpu"}, "device='gpu' is not a device"),
    (StoreSettings, {"index_type": "tree"}, "index_type='tree' must be one of"),
    (ChunkingSettings, {"chunk_mode": "overlap", "chunk_overlap_tokens": 192},
     r"chunk_overlap_tokens \(192\) must be smaller than chunk_tokens \(192\)"),
    (ServiceSettings, {"batch_wait_ms": 11}, "batch_wait_ms=11 must be from 0 to 10"),
    (ConnectionSettings, {"header_timeout_s": 0}, "header_timeout_s=0 must be a number > 0"),
])
def test_a_bad_value_is_a_config_error_naming_the_setting(component, values, message):
    with pytest.raises(ConfigError, match=message):
        component(**values)


def test_cuda_with_an_index_is_a_device():
    assert DeviceSettings(device="cuda:1").device == "cuda:1"
    assert QASettings.from_keywords(device="cuda:0").device.device == "cuda:0"


def test_every_setting_is_declared_once_with_a_doc():
    names = [info.name for component in ALL_COMPONENTS for info in component.infos()]
    assert len(names) == len(set(names))
    for component in ALL_COMPONENTS:
        assert component.component and component.__doc__
        for info in component.infos():
            assert info.doc and info.check is not None, info.name
            if info.check is not None:
                info.check(info.name, info.default)  # every default passes its own check


# -- the command line ----------------------------------------------------------------------------


def test_options_round_trip_to_the_settings():
    parser = parser_with(DeviceSettings, ReaderSettings)
    add_options(parser, RetrievalSettings, ["retrieval", "dense_weight", "retriever_top_k"])  # search's --top-k apart
    args = parser.parse_args(["--device", "cuda:1", "--top-k", "3", "--threshold", "auto", "--fast",
                              "--passages", "7", "--retrieval", "keyword", "--rank-weight", "0"])
    settings = from_args(QASettings, args)
    assert settings.device.device == "cuda:1"
    assert (settings.reader.answer_top_k, settings.reader.score_threshold, settings.reader.fast_reader) == (3, "auto", True)
    assert (settings.retrieval.retriever_top_k, settings.retrieval.retrieval) == (7, "keyword")
    assert settings.reader.rank_weight == 0.0
    assert settings.embedder == EmbedderSettings()  # no option given: every default
    untouched = from_args(QASettings, parser.parse_args([]))
    assert untouched == QASettings()


def test_only_the_named_settings_become_options_and_the_rest_keep_their_defaults():
    parser = parser_with()
    add_options(parser, RetrievalSettings, ["retrieval", "search_top_k"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--passages", "3"])
    settings = from_args(RetrievalSettings, parser.parse_args(["--top-k", "9"]))
    assert settings.search_top_k == 9 and settings.retriever_top_k == RetrievalSettings.retriever_top_k


def test_an_option_text_is_parsed_and_checked_by_its_declaration():
    parser = parser_with(EmbedderSettings, ReaderSettings)
    assert parser.parse_args(["--embed-max-tokens", "all"]).embed_max_tokens is None
    assert parser.parse_args(["--embed-max-tokens", "64"]).embed_max_tokens == 64
    assert parser.parse_args(["--threshold", "0.25"]).score_threshold == 0.25
    for argv, message in [(["--top-k", "0"], "--top-k=0 must be a whole number >= 1"),
                          (["--top-k", "many"], "--top-k='many' must be a whole number >= 1"),
                          (["--threshold", "2"], "--threshold=2.0 must be a number from 0 to 1, 'auto'"),
                          (["--embedder-precision", "int4"], "--embedder-precision='int4' must be one of")]:
        with pytest.raises(argparse.ArgumentError, match=message):
            parser.parse_args(argv)


def test_device_accepts_cuda_with_an_index_and_refuses_what_is_no_device():
    parser = parser_with(DeviceSettings)
    assert parser.parse_args(["--device", "cuda:1"]).device == "cuda:1"
    with pytest.raises(argparse.ArgumentError, match="is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        parser.parse_args(["--device", "tpu"])


def test_booleans_are_switches():
    parser = parser_with(ReaderSettings, ChunkingSettings)
    off = parser.parse_args([])
    assert off.fast_reader is False and off.clean_text is True
    on = parser.parse_args(["--fast", "--adaptive", "--no-clean-text"])
    assert on.fast_reader is True and on.adaptive_reading is True and on.clean_text is False
    assert from_args(ChunkingSettings, on).clean_text is False


def test_help_shows_the_declared_doc_and_default():
    text = parser_with(ReaderSettings, ChunkingSettings).format_help()
    assert "--max-seq-length N" in text
    doc = next(info.doc for info in ReaderSettings.infos() if info.name == "max_seq_length")
    assert " ".join(f"{doc} (default: 384)".split()) in " ".join(text.split())
    assert "--clean-text, --no-clean-text" in text and "(default: True)" in text


def test_an_override_changes_the_help_of_one_command_but_not_the_default():
    parser = parser_with()
    add_options(parser, ReaderSettings, ["reader"], reader={"help": "the tokenizer's model"})
    option = next(action for action in parser._actions if action.dest == "reader")
    assert option.help == "the tokenizer's model (default: distilbert/distilbert-base-cased-distilled-squad)"
    assert option.default == ReaderSettings.reader
    with pytest.raises(TypeError, match="declares no setting readr"):
        add_options(parser_with(), ReaderSettings, ["readr"])


def test_checks_between_settings_run_when_the_settings_are_made():
    parser = parser_with(ReaderSettings)
    args = parser.parse_args(["--max-seq-length", "64", "--doc-stride", "64"])  # each fine on its own
    with pytest.raises(ConfigError, match="doc_stride=64 must be smaller than max_seq_length=64"):
        from_args(ReaderSettings, args)


def test_a_process_budget_below_what_a_worker_needs_to_start_is_refused_by_its_declaration():
    # The floors live in the declarations: the parse pool and the page workers check nothing twice.
    with pytest.raises(ConfigError, match=r"memory_mb=32 must be a whole number >= 64 \(a parser process"):
        ParseSettings(memory_mb=32)
    assert ParseSettings(memory_mb=None).memory_mb is None  # no cap
    with pytest.raises(ConfigError, match=r"page_memory_mb=128 must be a whole number >= 256 \(a page worker"):
        ServiceSettings(page_memory_mb=128)
    assert ServiceSettings.check_value("page_memory_mb", 256) == 256
    with pytest.raises(ConfigError, match=r"page_timeout_s=0"):
        ServiceSettings.check_value("page_timeout_s", 0)
