import pytest

from spanqa.pipelines.eval_metrics import (
    best_over_golds,
    exact_match,
    f1,
    first_hit_rank,
    mean_reciprocal_rank,
    normalize_answer,
    recall_at,
)


class TestSquadAnswerMetric:
    def test_normalisation_drops_case_punctuation_articles_and_extra_space(self):
        assert normalize_answer("  The  Denver Broncos!  ") == "denver broncos"
        assert normalize_answer("an apple, a pear") == "apple pear"
        # "theory" only contains an article's letters: it stays
        assert normalize_answer("Theory of the Mind") == "theory of mind"

    def test_exact_match_ignores_articles_and_punctuation_only(self):
        assert exact_match("the Broncos.", "Broncos")
        assert not exact_match("Denver Broncos", "Broncos")

    def test_f1_counts_token_overlap(self):
        # prediction [denver broncos team], gold [broncos of denver]: overlap 2, precision = recall = 2/3
        assert f1("Denver Broncos team", "the Broncos of Denver") == pytest.approx(2 / 3)
        assert f1("Santa Clara", "Santa Clara, California") == pytest.approx(0.8)
        assert f1("nothing shared", "Broncos") == 0.0

    def test_f1_counts_repeated_tokens_as_a_multiset(self):
        assert f1("x x y", "x y y") == pytest.approx(2 / 3)

    def test_empty_prediction_scores_zero(self):
        assert best_over_golds("", ["Broncos"]) == (0.0, 0.0)
        assert best_over_golds("the", ["Broncos"]) == (0.0, 0.0)  # normalises to empty

    def test_best_gold_wins_for_each_metric_separately(self):
        em, f = best_over_golds("Denver Broncos", ["Broncos", "Denver Broncos", "Denver"])
        assert (em, f) == (1.0, 1.0)
        em, f = best_over_golds("the Denver team", ["Broncos", "Denver Broncos"])
        assert em == 0.0 and f == pytest.approx(0.5)

    def test_no_gold_is_an_error(self):
        with pytest.raises(ValueError, match="gold"):
            best_over_golds("x", [])


class TestRetrievalMetrics:
    def test_ranks_recall_and_mrr(self):
        ranks = [first_hit_rank(["a", "b", "c"], "a"), first_hit_rank(["b", "c", "a"], "a"), first_hit_rank(["b"], "a")]
        assert ranks == [1, 3, None]
        assert recall_at(ranks, 1) == pytest.approx(1 / 3)
        assert recall_at(ranks, 3) == pytest.approx(2 / 3)
        assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3) / 3)
        assert recall_at([], 5) == 0.0 and mean_reciprocal_rank([]) == 0.0
