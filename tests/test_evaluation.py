import json

import pytest

from spanqa.errors import ConfigError, DocumentError
from spanqa.pipelines.evaluation import contains_an_answer, evaluate, load_squad, write_contexts
from spanqa.records import Answer, Passage

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Super_Bowl_50",
            "paragraphs": [
                {
                    "context": "Super Bowl 50 was played at Levi's Stadium in Santa Clara.",
                    "qas": [
                        {"id": "q1", "question": "Where was Super Bowl 50 played?",
                         "answers": [{"text": "Levi's Stadium", "answer_start": 28}, {"text": "Santa Clara", "answer_start": 46}]},
                    ],
                },
                {
                    "context": "The Denver Broncos defeated the Carolina Panthers 24 to 10.",
                    "qas": [
                        {"id": "q2", "question": "Who won?", "answers": [{"text": "Denver Broncos", "answer_start": 4}]},
                        {"id": "q3", "question": "Unanswerable?", "answers": []},
                    ],
                },
            ],
        }
    ],
}


@pytest.fixture()
def squad_file(tmp_path):
    path = tmp_path / "set.json"
    path.write_text(json.dumps(SQUAD))
    return path


def test_load_keeps_answerable_questions_and_their_paragraphs(squad_file):
    squad = load_squad(squad_file)

    assert len(squad.contexts) == 2 and squad.titles == ("Super_Bowl_50", "Super_Bowl_50")
    assert [(q.question_id, q.context_index, q.answers) for q in squad.questions] == [
        ("q1", 0, ("Levi's Stadium", "Santa Clara")),
        ("q2", 1, ("Denver Broncos",)),
    ]


@pytest.mark.parametrize(
    "content, reason",
    [("{not json", "not a readable JSON"), ('{"rows": []}', "not SQuAD format"), ('{"data": []}', "no answerable")],
)
def test_bad_files_are_document_errors(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DocumentError, match=reason):
        load_squad(path)
    with pytest.raises(DocumentError, match="no such file"):
        load_squad(tmp_path / "missing.json")


def test_contexts_are_written_one_file_each_named_by_title(squad_file, tmp_path):
    squad = load_squad(squad_file)

    sources = write_contexts(squad, tmp_path / "ctx")

    assert sorted(sources.values()) == [0, 1]
    for path, index in sources.items():
        assert path.endswith("Super_Bowl_50.txt")
        assert open(path, encoding="utf-8").read() == squad.contexts[index]


def test_answer_containment_uses_squad_normalisation():
    assert contains_an_answer("Played at the Levi's  Stadium, in 2016", ("Levis Stadium",))
    assert not contains_an_answer("Stadiums of Levi", ("Levi's Stadium",))
    assert not contains_an_answer("anything", ("the",))  # normalises to nothing: never a match


class FakeQA:
    """Retrieval returns the scripted passages; the reader answers with the first word of the first passage."""

    rank_weight = 2.0

    def __init__(self, retrieved):
        self.retrieved = retrieved
        self.read_calls = []
        self.prefix_calls = []

    def search(self, question, top_k):
        return self.retrieved[question][:top_k]

    def read(self, question, passages, top_k):
        self.read_calls.append((question, [p.text for p in passages]))
        if not passages:
            return []
        text = passages[0].text.split(" ")[0]
        return [Answer(text, 0.9, passages[0].source, 1, 0, len(text), text, 0, len(text))]

    def read_prefixes(self, question, passages, counts, top_k, rank_weights):
        """Ranked by the reader alone it answers from the last passage read, with the prior from the first."""
        self.prefix_calls.append((question, [p.text for p in passages], list(counts), list(rank_weights)))
        found = {}
        for count in counts:
            for weight in rank_weights:
                chosen = passages[:count][0 if weight else -1]
                text = chosen.text
                found[(count, weight)] = [Answer(text, 0.9, chosen.source, 1, 0, len(text), text, 0, len(text))]
        return found


def _passage(text, source):
    return Passage(text=text, score=0.5, source=source, page=1, start=0, end=len(text))


def test_report_on_scripted_retrieval_and_reading(squad_file):
    squad = load_squad(squad_file)
    sources = {"/a": 0, "/b": 1}
    qa = FakeQA(
        {
            "Where was Super Bowl 50 played?": [_passage("Levi's Stadium x", "/b"), _passage("Santa Clara y", "/a")],
            "Who won?": [_passage("Denver Broncos z", "/b")],
        }
    )

    report = evaluate(qa, squad, file="set.json", mode="full", passages=(1,), sources=sources)

    assert report.questions == 2
    assert report.recall[1] == 0.5 and report.recall[5] == 1.0  # q1's paragraph comes second
    assert report.mrr == pytest.approx((1 / 2 + 1) / 2)
    # gold paragraphs start "Super" and "The": the fake reader's answers miss both
    assert report.reader.exact_match == 0.0 and report.reader.f1 == 0.0
    # end to end it reads the top passage: "Levi's" (F1 2/3 against "Levi's Stadium") and "Denver"
    assert list(report.end_to_end) == [(1, 2.0)]
    assert report.end_to_end[(1, 2.0)].exact_match == 0.0
    assert report.end_to_end[(1, 2.0)].f1 == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert report.end_to_end[(1, 2.0)].answered == 1.0
    assert set(report.seconds_per_question) == {"retrieve", "read (gold paragraph)", "read (retrieved)"}
    assert json.loads(json.dumps(report.to_json()))["retrieval"]["recall"]["1"] == 0.5
    assert "R@1 50.0" in report.to_text()


def test_without_a_source_map_a_passage_holding_an_answer_is_relevant(squad_file):
    squad = load_squad(squad_file)
    qa = FakeQA({"Where was Super Bowl 50 played?": [_passage("nothing", "/x"), _passage("in Santa Clara", "/y")],
                 "Who won?": [_passage("no", "/z")]})

    report = evaluate(qa, squad, file="s", mode="retrieval-only", passages=(5,))

    assert report.recall[1] == 0.0 and report.recall[5] == 0.5
    assert report.reader is None and qa.read_calls == []
    assert "contains a gold answer" in report.relevance


def test_reader_only_never_retrieves_and_limit_cuts_questions(squad_file):
    squad = load_squad(squad_file)

    class NoSearch(FakeQA):
        def search(self, question, top_k):
            raise AssertionError("reader-only must not retrieve")

    qa = NoSearch({})
    report = evaluate(qa, squad, file="s", mode="reader-only", limit=1)

    assert report.questions == 1 and report.mrr is None
    # one untimed warm-up read, then the one question
    assert qa.read_calls == [("Where was Super Bowl 50 played?", [squad.contexts[0]])] * 2


def test_several_passage_counts_are_read_once_and_scored_per_count_and_ranking(squad_file):
    squad = load_squad(squad_file)
    qa = FakeQA({
        "Where was Super Bowl 50 played?": [_passage("Levi's Stadium", "/b"), _passage("Santa", "/a"),
                                            _passage("nowhere", "/c")],
        "Who won?": [_passage("Denver Broncos", "/b"), _passage("Carolina", "/a"), _passage("Panthers", "/c")],
    })

    report = evaluate(qa, squad, file="s", mode="full", passages=(3, 1))

    # one read of the top 3 per question, asked for both counts and both rankings
    assert [call[2:] for call in qa.prefix_calls] == [([1, 3], [2.0, 0.0])] * 2
    assert [len(call[1]) for call in qa.prefix_calls] == [3, 3]
    assert list(report.end_to_end) == [(1, 0.0), (1, 2.0), (3, 0.0), (3, 2.0)]
    assert report.end_to_end[(3, 2.0)].exact_match == 1.0  # the first passages' texts
    assert report.end_to_end[(3, 0.0)].exact_match == 0.0  # "nowhere", "Panthers" from the last
    assert report.end_to_end[(1, 0.0)].exact_match == 1.0
    rows = report.to_json()["end_to_end"]
    assert {(row["passages"], row["rank_weight"]) for row in rows} == set(report.end_to_end)
    assert "reader reads the top 3 passages; reader alone" in report.to_text()
    assert "reader reads the top 3 passages; as ask ranks" in report.to_text()


def test_a_threshold_reports_the_share_answered(squad_file):
    squad = load_squad(squad_file)

    class Abstains(FakeQA):
        def read(self, question, passages, top_k):
            return [] if question == "Who won?" else super().read(question, passages, top_k)

    qa = Abstains({"Where was Super Bowl 50 played?": [_passage("Levi's x", "/b")], "Who won?": [_passage("Denver", "/b")]})
    report = evaluate(qa, squad, file="s", mode="full", passages=(1,), threshold="auto")

    assert report.end_to_end[(1, 2.0)].answered == 0.5
    assert "answered 50.0%" in report.to_text()
    # "auto" judges retrieved passages only: no gold-paragraph stage, and reader-only is refused
    assert report.reader is None
    several = evaluate(qa, squad, file="s", mode="full", passages=(1, 2), threshold="auto")
    assert list(several.end_to_end) == [(1, 2.0), (2, 2.0)]  # the calibration's weight only
    with pytest.raises(ConfigError, match="reader-only"):
        evaluate(qa, squad, file="s", mode="reader-only", threshold="auto")


@pytest.mark.parametrize("kwargs", [{"mode": "fast"}, {"limit": 0}, {"limit": True}, {"passages": ()}])
def test_bad_settings_are_config_errors(squad_file, kwargs):
    with pytest.raises(ConfigError):
        evaluate(FakeQA({}), load_squad(squad_file), file="s", **kwargs)
