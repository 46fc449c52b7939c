"""The SelectIT math against values computed by hand."""

import numpy as np
import pytest

from selectit import reflection as R


def test_token_score_by_hand():
    # p = [.1, .1, .2, .4, .2] (mass 1): base = 4, spread = (0.3+0.3+0.2+0+0.2)/4 = 0.25 -> 1.0
    assert R.token_scores(np.array([0.1, 0.1, 0.2, 0.4, 0.2])) == pytest.approx(1.0)
    # Mass 0.5: renormalised to the same distribution, so the same score.
    assert R.token_scores(np.array([0.05, 0.05, 0.1, 0.2, 0.1])) == pytest.approx(1.0)
    # Certain of 5: base 5, spread (1*4)/4 = 1 -> 5.  Certain of 1 -> 1.
    assert R.token_scores(np.array([0, 0, 0, 0, 0.3])) == pytest.approx(5.0)
    assert R.token_scores(np.array([0.3, 0, 0, 0, 0])) == pytest.approx(1.0)
    # Uniform: base 1 (first max), spread 0 -> 0.
    assert R.token_scores(np.full(5, 0.2)) == pytest.approx(0.0)


def test_ties_take_the_first_max():
    # p' = [0, .4, 0, .4, .2]: first max is label 2; spread = (.4+0+.4+0+.2)/4 = 0.25 -> 0.5
    assert R.token_scores(np.array([0, 0.4, 0, 0.4, 0.2])) == pytest.approx(0.5)


def test_zero_and_nonfinite_mass_give_nan_not_a_default():
    probs = np.array([[0, 0, 0, 0, 0], [np.nan, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.4, 0.2]])
    t = R.token_scores(probs)
    assert np.isnan(t[0]) and np.isnan(t[1]) and t[2] == pytest.approx(1.0)
    assert R.label_mass(probs)[0] == 0


def test_reference_mode_softmax_squashes():
    p = np.array([0, 0, 0, 0, 0.3])  # p' = [0,0,0,0,1]; softmax -> [1,1,1,1,e]/(4+e)
    e = np.e
    q = np.array([1, 1, 1, 1, e]) / (4 + e)
    expected = 5 * (4 * (q[4] - q[0])) / 4
    assert R.token_scores(p, mode="reference") == pytest.approx(expected)
    assert R.normalise(p, mode="reference").max() == pytest.approx(e / (4 + e))  # ~0.405
    assert R.token_scores(p, mode="paper") == pytest.approx(5.0)


def test_sentence_level_by_hand():
    token = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    std = np.sqrt(2 / 3)  # ddof = 0
    s = R.sentence_scores(token, alpha=0.2)
    assert s[0] == pytest.approx(2.0 / (1 + 0.2 * std))
    assert s[1] == pytest.approx(2.0)
    assert R.sentence_scores(token, alpha=0.0)[0] == pytest.approx(2.0)


def test_sentence_level_leaves_out_prompts_without_mass():
    token = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan]])
    s = R.sentence_scores(token, alpha=0.2)
    assert s[0] == pytest.approx(2.0 / (1 + 0.2 * 1.0))
    assert np.isnan(s[1])


def test_model_level_one_and_several_models():
    sent = np.array([[1.0], [2.0]])
    np.testing.assert_allclose(R.model_scores(sent, R.model_weights([135e6])), [1.0, 2.0])
    sent3 = np.array([[1.0, 2.0, 3.0]])
    w = R.model_weights([7e9, 13e9, 70e9])  # paper: 7/90, 13/90, 70/90
    np.testing.assert_allclose(w, [7 / 90, 13 / 90, 70 / 90])
    assert R.model_scores(sent3, w)[0] == pytest.approx((7 * 1 + 13 * 2 + 70 * 3) / 90)
    ref = R.reference_model_weights(3)  # the published scripts: 7/20, 13/20, 70/90
    assert R.model_scores(sent3, ref)[0] == pytest.approx(7 / 20 * 1 + 13 / 20 * 2 + 70 / 90 * 3)


def test_reference_weights_only_for_one_or_three_models():
    assert R.reference_model_weights(1).tolist() == [1.0]
    with pytest.raises(ValueError, match="exactly 1 or 3"):
        R.reference_model_weights(2)


def test_a_model_without_score_makes_the_record_unscored():
    sent = np.array([[1.0, np.nan]])
    assert np.isnan(R.model_scores(sent, [0.5, 0.5])[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        R.token_scores(np.ones(5), mode="nope")
    with pytest.raises(ValueError, match="alpha"):
        R.sentence_scores(np.ones((1, 2)), alpha=-1)
    with pytest.raises(ValueError, match="positive"):
        R.model_weights([1.0, 0.0])


def test_batched_shapes():
    rng = np.random.default_rng(0)
    probs = rng.random((4, 3, 5))
    t = R.token_scores(probs)
    assert t.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            assert t[i, j] == pytest.approx(R.token_scores(probs[i, j]))
    assert ((t >= 0) & (t <= 5)).all()


def test_expected_rating_by_hand():
    # p' = [.1, .1, .2, .4, .2]: 0.1 + 0.2 + 0.6 + 1.6 + 1.0 = 3.5; the mass does not matter.
    assert R.expected_scores(np.array([0.1, 0.1, 0.2, 0.4, 0.2])) == pytest.approx(3.5)
    assert R.expected_scores(np.array([0.05, 0.05, 0.1, 0.2, 0.1])) == pytest.approx(3.5)
    assert R.expected_scores(np.array([0, 0, 0, 0, 0.3])) == pytest.approx(5.0)
    assert np.isnan(R.expected_scores(np.zeros(5)))


def test_calibration_divides_out_the_content_free_bias():
    # The model says "5" half the time whatever it reads: c = [.125]*4 + [.5].
    c = np.array([[0.125, 0.125, 0.125, 0.125, 0.5]])  # (P=1, S=5)
    biased = np.array([[[0.1, 0.1, 0.1, 0.1, 0.4]]])  # (n=1, P=1, S): exactly the bias
    np.testing.assert_allclose(R.calibrate(biased, c), np.full((1, 1, 5), 0.2))  # -> uniform
    # By hand: p' = [.4, .1, .1, .1, .3]; p'/c = [3.2, .8, .8, .8, .6], sum 6.2.
    p = np.array([[[0.4, 0.1, 0.1, 0.1, 0.3]]])
    np.testing.assert_allclose(R.calibrate(p, c)[0, 0], np.array([3.2, 0.8, 0.8, 0.8, 0.6]) / 6.2)
    # Scale-free on both sides; zero mass stays NaN.
    np.testing.assert_allclose(R.calibrate(p * 0.3, c * 7), R.calibrate(p, c))
    assert np.isnan(R.calibrate(np.zeros((1, 1, 5)), c)).all()


def test_mass_weighted_sentence_score_by_hand():
    t = np.array([[1.0, 3.0, np.nan]])
    w = np.array([[3.0, 1.0, 5.0]])  # the NaN prompt's weight is ignored
    mean = (3 * 1 + 1 * 3) / 4  # 1.5
    std = np.sqrt((3 * 0.25 + 1 * 2.25) / 4)  # sqrt(0.75)
    assert R.sentence_scores(t, alpha=0.2, weights=w) == pytest.approx(mean / (1 + 0.2 * std))
    # Equal weights give the paper's formula; all-zero weights give NaN.
    t2 = np.array([[1.0, 2.0, 4.0], [0.5, 0.5, 3.0]])
    np.testing.assert_allclose(R.sentence_scores(t2, weights=np.ones((2, 3))), R.sentence_scores(t2))
    assert np.isnan(R.sentence_scores(np.array([[1.0, 2.0]]), weights=np.zeros((1, 2))))[0]


def test_likelihood_term_by_hand():
    # given 1.0 nat/token, blank 1.5: fluency -1.0 + relevance 0.5 = -0.5; blank = given: no relevance.
    given, blank = np.array([1.0, 2.0, np.nan]), np.array([1.5, 2.0, 1.0])
    lik = R.likelihood_scores(given, blank)
    assert lik[:2] == pytest.approx([-0.5, -2.0]) and np.isnan(lik[2])
    sentence = np.array([3.0, 4.0, 3.0])
    assert R.with_likelihood(sentence, lik, 2.0)[:2] == pytest.approx([2.0, 0.0])
    assert np.isnan(R.with_likelihood(sentence, lik, 2.0)[2])  # no loss: no score, never a default
    np.testing.assert_array_equal(R.with_likelihood(sentence, lik, 0.0), sentence)  # weight 0: the paper
    with pytest.raises(ValueError, match=">= 0"):
        R.with_likelihood(sentence, lik, -1.0)
    with pytest.raises(ValueError, match="shape"):
        R.likelihood_scores(given, blank[:2])


def test_information_term_by_hand():
    """(blank - given) x characters / 200: 0.5 nat/token of gain over a 400-character answer is 1.0; the
    same gain over a 40-character answer is 0.1; no gain (an answer the instruction does not explain) is 0."""
    given, blank = np.array([1.0, 1.0, 2.0, np.nan]), np.array([1.5, 1.5, 2.0, 1.0])
    info = R.information_scores(given, blank, np.array([400, 40, 300, 100]))
    assert info[:3] == pytest.approx([1.0, 0.1, 0.0]) and np.isnan(info[3])
    assert R.INFORMATION_CHARS == 200
    with pytest.raises(ValueError, match="shape"):
        R.information_scores(given, blank, np.array([1, 2]))
