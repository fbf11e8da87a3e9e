import pytest

from spanqa.errors import ConfigError
from spanqa.indexing.retrieval.fusion import check_dense_weight, check_retrieval_mode
from spanqa.indexing.store.rank_fusion import fuse_rankings, min_max_scaled


def test_min_max_scaling_maps_best_to_one_and_worst_to_zero():
    assert min_max_scaled([3.0, 2.0, 1.0]) == [1.0, 0.5, 0.0]
    assert min_max_scaled([0.7]) == [1.0]
    assert min_max_scaled([]) == []


def test_fusion_known_answer():
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.5)]  # scaled 1, 0.75, 0
    keyword = [("c", 12.0), ("d", 4.0), ("a", 2.0)]  # scaled 1, 0.2, 0

    fused = dict(fuse_rankings(dense, keyword, dense_weight=0.4))

    assert fused == pytest.approx({"a": 0.4, "b": 0.3, "c": 0.6, "d": 0.12})
    assert [identifier for identifier, _ in fuse_rankings(dense, keyword, 0.4)] == ["c", "a", "b", "d"]


def test_a_weight_of_one_or_zero_gives_one_sides_order():
    dense = [("a", 0.9), ("b", 0.8)]
    keyword = [("b", 5.0), ("a", 1.0), ("z", 0.5)]

    assert [i for i, _ in fuse_rankings(dense, keyword, 1.0)][:2] == ["a", "b"]
    assert [i for i, _ in fuse_rankings(dense, keyword, 0.0)] == ["b", "a", "z"]


def test_one_empty_side_keeps_the_other_ranking():
    assert [i for i, _ in fuse_rankings([], [("x", 2.0), ("y", 1.0)], 0.5)] == ["x", "y"]


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.4", True, None])
def test_bad_weight_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="dense_weight"):
        check_dense_weight(bad)


def test_bad_mode_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="retrieval='sparse' must be one of 'hybrid', 'dense', 'keyword'"):
        check_retrieval_mode("sparse")
    assert check_retrieval_mode("keyword") == "keyword"
