"""monosemanticity/explanations.py: offline explanations and their held-out detection scores, checked against
brute force."""
import itertools

import numpy as np

from monosemanticity.explanations import (NgramCounts, best_subset, candidate_patterns, explain_and_score,
                                          explanation_text, ngram_keys, pattern_text, summarize)

V = 12


def matches(tokens: np.ndarray, pattern: list[int]) -> np.ndarray:
    """Brute force: flat positions of tokens (n, T) where pattern (its last token at the position) matches,
    the pattern wholly inside the context."""
    n, T = tokens.shape
    L = len(pattern)
    return np.array([c * T + p for c in range(n) for p in range(L - 1, T)
                     if list(tokens[c, p - L + 1:p + 1]) == list(pattern)], dtype=np.int64)


def random_tokens(rng, n: int = 30, T: int = 40) -> np.ndarray:
    return rng.integers(0, V, size=(n, T))


def fire_where(tokens: np.ndarray, patterns: list[list[int]], rng, p_keep: float = 1.0,
               p_noise: float = 0.0) -> np.ndarray:
    """A planted unit: fires where one of patterns matches (each match kept with p_keep), plus random noise."""
    hit = np.zeros(tokens.size, dtype=bool)
    for pat in patterns:
        m = matches(tokens, pat)
        hit[m[rng.random(len(m)) < p_keep]] = True
    hit |= rng.random(tokens.size) < p_noise
    return np.flatnonzero(hit)


def test_ngram_keys_stop_at_the_context_start():
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    keys = ngram_keys(tokens, 10)
    assert keys[0].tolist() == [1, 2, 3, 4, 5, 6]
    assert keys[1].tolist() == [-1, 12, 23, -1, 45, 56]  # no (3, 4) across the contexts' border
    assert keys[2].tolist() == [-1, -1, 123, -1, -1, 456]


def test_planted_units_get_their_patterns_and_full_scores():
    rng = np.random.default_rng(0)
    tok_e, tok_s = random_tokens(rng), random_tokens(rng)
    for tokens in (tok_e, tok_s):  # the trigrams a few times each (by chance: about 1 in 1200 tokens)
        tokens[:5, 10:13], tokens[5:10, 20:23] = [2, 7, 5], [1, 4, 6]
    planted = [[[3]], [[7, 5]], [[9], [2, 7, 5]], [[1, 4, 6]]]
    fe = [fire_where(tok_e, p, rng) for p in planted]
    fs = [fire_where(tok_s, p, rng) for p in planted]
    units = explain_and_score(fe, fs, tok_e, tok_s, V, min_precision=0.9)  # (4, 6) alone: precision ~0.5
    for u, pats in zip(units, planted):
        assert sorted(u['patterns']) == sorted(pats)
        assert (u['precision'], u['recall'], u['f1']) == (1.0, 1.0, 1.0)
        assert u['pattern_precision'] == [1.0] * len(pats)


def test_a_unit_firing_at_random_scores_low():
    rng = np.random.default_rng(1)
    tok_e, tok_s = random_tokens(rng), random_tokens(rng)
    fe, fs = fire_where(tok_e, [], rng, p_noise=0.05), fire_where(tok_s, [], rng, p_noise=0.05)
    (u,) = explain_and_score([fe], [fs], tok_e, tok_s, V)
    assert u['f1'] < 0.2


def test_scores_come_from_the_score_tokens_only():
    """Explained on its firings on token 4 (EXPLAIN split), the unit fires on token 9 in the SCORE split: the
    explanation holds token 4 only, and its held-out recall is 0."""
    rng = np.random.default_rng(2)
    tok_e, tok_s = random_tokens(rng), random_tokens(rng)
    (u,) = explain_and_score([matches(tok_e, [4])], [matches(tok_s, [9])], tok_e, tok_s, V)
    assert u['patterns'] == [[4]]
    assert u['n_fire_score'] == len(matches(tok_s, [9]))
    assert (u['tp'], u['recall'], u['f1']) == (0, 0.0, 0.0)
    assert u['fp'] == len(matches(tok_s, [4]))


def test_a_unit_silent_on_the_score_tokens_scores_f1_0_and_counts_in_the_median():
    """Three units that fire on the EXPLAIN tokens: one on token 3 in both splits (F1 1); one on token 4 in the
    EXPLAIN split only, whose pattern matches SCORE tokens (all false: precision 0, recall 0/0 counted 0); one on
    token 5 in the EXPLAIN split only, a token the SCORE split lacks (nothing predicted). Both silent units score F1 0
    and count in the main median (0), not in 'with_score_firings' (1). A unit that never fires on the EXPLAIN tokens
    (it fires on SCORE tokens) has no explanation: not scored, counted as dead."""
    rng = np.random.default_rng(3)
    tok_e, tok_s = random_tokens(rng), random_tokens(rng)
    tok_s[tok_s == 5] = 6
    fe = [matches(tok_e, [3]), matches(tok_e, [4]), matches(tok_e, [5]), []]
    fs = [matches(tok_s, [3]), [], [], matches(tok_s, [4])]
    units = explain_and_score(fe, fs, tok_e, tok_s, V)
    assert [u['patterns'] for u in units] == [[[3]], [[4]], [[5]], []]
    assert [u['f1'] for u in units] == [1.0, 0.0, 0.0, None]
    assert (units[1]['tp'], units[1]['fp'], units[1]['fn']) == (0, len(matches(tok_s, [4])), 0) and units[1]['fp'] > 0
    assert (units[2]['tp'], units[2]['fp'], units[2]['fn']) == (0, 0, 0)
    assert [(u['precision'], u['recall']) for u in units[1:3]] == [(0.0, 0.0)] * 2
    s = summarize(units)
    assert (s['n_units'], s['n_dead_explain'], s['n_scored'], s['n_no_score_firings']) == (4, 1, 3, 2)
    assert (s['median_f1'], s['share_f1_above_0.5']) == (0.0, round(1 / 3, 4))
    assert (s['with_score_firings']['n_scored'], s['with_score_firings']['median_f1']) == (1, 1.0)


def noisy_units(rng, tok_e, tok_s, n_units: int = 12):
    """Units of a few patterns each, kept at random and with noise: imperfect, overlapping explanations."""
    fe, fs = [], []
    for _ in range(n_units):
        pats = [list(rng.integers(0, V, size=rng.integers(1, 4))) for _ in range(rng.integers(1, 5))]
        p_keep, p_noise = rng.uniform(0.3, 1.0), rng.uniform(0, 0.03)
        fe.append(fire_where(tok_e, pats, rng, p_keep, p_noise))
        fs.append(fire_where(tok_s, pats, rng, p_keep, p_noise))
    return fe, fs


def test_patterns_and_scores_equal_brute_force():
    """Every number of every unit recomputed by brute force: each pattern's precision and support on the EXPLAIN
    tokens (and the rules min_precision / min_pattern_fires), disjoint matches, TP/FP/FN and P/R/F1 on the SCORE
    tokens."""
    rng = np.random.default_rng(4)
    tok_e, tok_s = random_tokens(rng, 40, 50), random_tokens(rng, 40, 50)
    fe, fs = noisy_units(rng, tok_e, tok_s)
    units = explain_and_score(fe, fs, tok_e, tok_s, V, min_precision=0.4, min_pattern_fires=3, max_patterns=4)
    assert sum(len(u['patterns']) for u in units) > len(units)  # the test sees multi-pattern explanations
    for u, e, s in zip(units, fe, fs):
        assert len(u['patterns']) <= 4
        for pat, prec, fires in zip(u['patterns'], u['pattern_precision'], u['pattern_fires']):
            m = matches(tok_e, pat)
            assert fires == np.isin(m, e).sum() >= 3
            assert np.isclose(prec, fires / len(m)) and prec >= 0.4
        for split_tokens in (tok_e, tok_s):
            all_m = np.concatenate([matches(split_tokens, p) for p in u['patterns']] + [np.zeros(0, np.int64)])
            assert len(np.unique(all_m)) == len(all_m)  # the patterns match disjoint positions
        predicted = np.concatenate([matches(tok_s, p) for p in u['patterns']] + [np.zeros(0, np.int64)])
        tp = int(np.isin(s, predicted).sum())
        assert (u['tp'], u['fp'], u['fn']) == (tp, len(predicted) - tp, len(s) - tp)
        P = tp / len(predicted) if len(predicted) else 0.0
        R = tp / len(s)
        assert np.isclose(u['precision'], P) and np.isclose(u['recall'], R)
        assert np.isclose(u['f1'], 2 * P * R / (P + R) if P + R else 0.0)


def test_the_chosen_patterns_have_the_best_f1_of_any_subset():
    """best_subset (Dinkelbach) against every subset of <= max_patterns candidates, on the EXPLAIN tokens."""
    rng = np.random.default_rng(5)
    tok_e, tok_s = random_tokens(rng, 40, 50), random_tokens(rng, 40, 50)
    fe, _ = noisy_units(rng, tok_e, tok_s, 20)
    keys = ngram_keys(tok_e, V)
    counts = NgramCounts(keys)
    n_checked = 0
    for e in fe:
        _, _, fires, match = candidate_patterns(keys[:, e], counts, 0.3, 2)
        if not 2 <= len(fires) <= 12:
            continue
        n_checked += 1
        for cap in (1, 2, 3):
            pick = best_subset(fires, match, len(e), cap)
            f1 = 2 * fires[pick].sum() / (match[pick].sum() + len(e))
            best = max(2 * fires[list(c)].sum() / (match[list(c)].sum() + len(e))
                       for r in range(1, cap + 1) for c in itertools.combinations(range(len(fires)), r))
            assert len(pick) <= cap and np.isclose(f1, best)
    assert n_checked >= 5


def test_summary_both_ways_by_hand():
    """8 units: 1 dead on the EXPLAIN tokens (f1 None), 2 that never fire on the SCORE tokens (F1 0), 5 that do (one of
    F1 0 too: its patterns miss). Main numbers over the 7 scored, 'with_score_firings' over the 5; worked by hand."""
    rows = [(0.92, 0.8, 1.0, 5), (0.22, 0.5, 0.1, 3), (None, None, None, 0), (0.62, 0.7, 0.5, 4), (0.48, 0.6, 0.5, 2),
            (0.0, 0.0, 0.0, 0), (0.0, 0.0, 0.0, 0), (0.0, 0.0, 0.0, 3)]
    units = [{'f1': f, 'precision': p, 'recall': r, 'n_fire_score': n} for f, p, r, n in rows]
    s = summarize(units)
    assert (s['n_units'], s['n_dead_explain'], s['n_scored'], s['n_no_score_firings']) == (8, 1, 7, 2)
    # F1 of the 7: 0 0 0 .22 .48 .62 .92; precision 0 0 0 .5 .6 .7 .8; recall 0 0 0 .1 .5 .5 1
    assert (s['median_f1'], s['mean_f1'], s['share_f1_above_0.5']) == (0.22, 0.32, 0.2857)
    assert (s['median_precision'], s['median_recall']) == (0.5, 0.1)
    hist = [0] * 20
    hist[0], hist[4], hist[9], hist[12], hist[18] = 3, 1, 1, 1, 1  # [0, .05) [.2, .25) [.45, .5) [.6, .65) [.9, .95)
    assert s['f1_hist']['counts'] == hist
    # the 5 firing on the SCORE tokens: F1 0 .22 .48 .62 .92; precision 0 .5 .6 .7 .8; recall 0 .1 .5 .5 1
    w = s['with_score_firings']
    assert (w['n_scored'], w['median_f1'], w['mean_f1'], w['share_f1_above_0.5']) == (5, 0.48, 0.448, 0.4)
    assert (w['median_precision'], w['median_recall']) == (0.6, 0.5)
    hist[0] = 1
    assert w['f1_hist']['counts'] == hist


def test_summary_equals_numpy():
    """Both ways against numpy on 60 units (F1 in tenths: some exactly 0.5, not above it)."""
    rng = np.random.default_rng(6)
    units = [{'f1': None if dead else float(f), 'precision': float(p), 'recall': float(r), 'n_fire_score': int(n)}
             for dead, f, p, r, n in zip(rng.random(60) < 0.1, rng.random(60).round(1), rng.random(60),
                                         rng.random(60), rng.integers(0, 3, 60))]
    s = summarize(units)
    for got, part in ((s, [u for u in units if u['f1'] is not None]),
                      (s['with_score_firings'], [u for u in units if u['f1'] is not None and u['n_fire_score']])):
        f1 = np.array([u['f1'] for u in part])
        assert got['n_scored'] == len(part) and got['median_f1'] == round(float(np.median(f1)), 4)
        assert got['mean_f1'] == round(float(f1.mean()), 4) and got['share_f1_above_0.5'] == round((f1 > 0.5).mean(), 4)
        assert got['median_precision'] == round(float(np.median([u['precision'] for u in part])), 4)
        assert got['median_recall'] == round(float(np.median([u['recall'] for u in part])), 4)
        assert got['f1_hist']['counts'] == np.histogram(f1, bins=np.linspace(0, 1, 21))[0].tolist()
    assert s['n_dead_explain'] == sum(u['f1'] is None for u in units) > 0
    assert s['n_no_score_firings'] == s['n_scored'] - s['with_score_firings']['n_scored'] > 0
    assert sum(u['f1'] == 0.5 for u in units) > 0


def test_pattern_text():
    vocab = ['%', '>>>', ' ', '\n', [226, 128]]
    assert pattern_text([0], vocab) == "'%'"
    assert pattern_text([1, 2, 0], vocab) == "'%' after '>>>' ' '"
    assert explanation_text([[3], [4]], vocab) == "'\\n' | b'\\xe2\\x80'"
    assert explanation_text([], vocab) == '(no pattern)'
