import numpy as np
import pytest

from selectit.selection.policy import rank, select_fraction, select_threshold, select_top


def test_rank_is_stable_and_puts_nan_last():
    s = np.array([1.0, 3.0, np.nan, 3.0, 2.0])
    assert rank(s).tolist() == [1, 3, 4, 0, 2]


def test_fraction_floor():
    s = np.arange(10, dtype=float)
    assert select_fraction(s, 0.2).tolist() == [9, 8]
    assert len(select_fraction(np.zeros(100), 0.29)) == 29  # 100 * 0.29 == 28.999999999999996
    assert len(select_fraction(s, 1.0)) == 10
    assert len(select_fraction(np.zeros(4), 0.2)) == 0


@pytest.mark.parametrize("f", [0, -0.1, 1.5])
def test_fraction_out_of_range(f):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        select_fraction(np.zeros(3), f)


def test_top_and_threshold_never_pick_unscored():
    s = np.array([0.5, np.nan, 0.7, 0.5])
    assert select_top(s, 3).tolist() == [2, 0, 3]
    assert select_top(s, 10).tolist() == [2, 0, 3]
    assert select_threshold(s, 0.5).tolist() == [2, 0, 3]
    assert select_threshold(s, 0.6).tolist() == [2]
