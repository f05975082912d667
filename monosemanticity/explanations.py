"""
Offline automated interpretability: an explanation of each unit (SAE feature or neuron) from the tokens it fires
on, with no language model, and its detection score on tokens it was not built from.

An explanation is a short list of token patterns, in the spirit of Foote et al. 2023, "Neuron to Graph" (N2G): a
pattern is a token, optionally with the one or two tokens before it ("'%' after '>>>'"), and the explanation
predicts that the unit fires wherever one of its patterns matches. It is built from the firings on the EXPLAIN
tokens and scored on the SCORE tokens (precision, recall, F1 of the predicted firings), so a unit that fires on a
few well-defined contexts scores high and one that fires on many unrelated ones scores low: the paper's
interpretability comparison of features and neurons, as a proxy (no human rater, no LLM simulator).

    units = explain_and_score(fire_explain, fire_score, tokens_explain, tokens_score, vocab_size,
                              min_precision=0.5, min_pattern_fires=2, max_patterns=10)

How the patterns are chosen (all counts on the EXPLAIN tokens; precision of a pattern = the unit's firings it
covers / the positions it matches):
  1. for each token a the unit fires on: the pattern (a) if its precision >= min_precision and it covers
     >= min_pattern_fires firings; else the bigrams (b, a) of its firings with that precision and support; for the
     firings left, the trigrams (c, b, a) likewise. So the patterns match disjoint sets of positions.
  2. of those candidates, the <= max_patterns whose union has the highest F1 (exact: Dinkelbach's method for the
     ratio F1 = 2·covered / (matched + firings), possible as the patterns are disjoint).
N-grams never reach across the start of a context (the model saw no token before it).

Which units are scored (SCORED_RULE): every unit that fires on the EXPLAIN tokens. One that never fires on the SCORE
tokens scores F1 0: its patterns' matches there are all false (precision 0) or it predicts none, and either way there
is no held-out firing it explains (recall 0/0, counted 0, as precision 0/0 is). Leaving such units out would keep
only the units that happen to fire again and raise a set's median. A unit that never fires on the EXPLAIN tokens has
no explanation and is left out (counted as dead). summarize gives both ways: its main numbers over every scored unit,
and 'with_score_firings' over those that fire on the SCORE tokens too (the rule before).
"""
import numpy as np

ORDERS = 3  # patterns of 1, 2 or 3 tokens
HIST_EDGES = np.linspace(0, 1, 21)  # bins of the F1 histograms
SCORED_RULE = ("a unit that fires on the EXPLAIN tokens but never on the SCORE tokens scores F1 0 (precision 0, "
               "recall 0/0 counted 0); 'with_score_firings' leaves these units out; a unit that never fires on the "
               "EXPLAIN tokens has no explanation and is left out (dead)")  # report.json's rule.text ends with it


# ----------------------------------------------------------------------------- n-gram keys and their counts

def ngram_keys(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """tokens (n_ctx, T) -> (ORDERS, n_ctx*T) int64: row o-1 encodes the o tokens ending at each position (base
    vocab_size, the position's own token last); -1 where the o-gram would start before the context."""
    t = np.asarray(tokens, dtype=np.int64)
    n, T = t.shape
    keys = np.full((ORDERS, n, T), -1, dtype=np.int64)
    keys[0] = t
    for o in range(1, ORDERS):
        keys[o, :, o:] = keys[o - 1, :, o - 1:-1] * vocab_size + t[:, o:]
    return keys.reshape(ORDERS, n * T)


def key_pattern(key: int, order: int, vocab_size: int) -> list[int]:
    """The token ids of an o-gram key (first token first)."""
    out = []
    for _ in range(order):
        key, tok = divmod(int(key), vocab_size)
        out.append(tok)
    return out[::-1]


def pattern_key(pattern: list[int], vocab_size: int) -> int:
    key = 0
    for tok in pattern:
        key = key * vocab_size + int(tok)
    return key


class NgramCounts:
    """How often each o-gram occurs in a token set: sorted keys and their counts per order."""

    def __init__(self, keys: np.ndarray):
        self.keys, self.counts = [], []
        for row in keys:
            k, c = np.unique(row[row >= 0], return_counts=True)
            self.keys.append(k)
            self.counts.append(c)

    def count(self, order: int, keys: np.ndarray) -> np.ndarray:
        """(n,) occurrences of each of keys (o-grams of this order) in the token set; 0 for an absent one."""
        k, c = self.keys[order - 1], self.counts[order - 1]
        if not len(k):
            return np.zeros(len(keys), dtype=np.int64)
        i = np.minimum(np.searchsorted(k, keys), len(k) - 1)
        return np.where(k[i] == keys, c[i], 0)


# ----------------------------------------------------------------------------- explanation of one unit

def candidate_patterns(fire_keys: np.ndarray, counts: NgramCounts, min_precision: float,
                       min_pattern_fires: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """fire_keys (ORDERS, n) the n-gram keys of a unit's firings -> candidates (order, key, fires, matches), the
    shortest context that is precise enough for each firing (step 1 of the module docstring)."""
    left = np.ones(fire_keys.shape[1], dtype=bool)  # firings not yet covered by a candidate
    found = []
    for order in range(1, ORDERS + 1):
        k = fire_keys[order - 1][left]
        k = k[k >= 0]
        if not len(k):
            break
        uniq, fires = np.unique(k, return_counts=True)
        matches = counts.count(order, uniq)
        keep = (fires >= min_pattern_fires) & (fires >= min_precision * matches)
        if keep.any():
            found.append((np.full(int(keep.sum()), order), uniq[keep], fires[keep], matches[keep]))
            left &= ~np.isin(fire_keys[order - 1], uniq[keep])
    if not found:
        return tuple(np.zeros(0, np.int64) for _ in range(4))
    return tuple(np.concatenate(x) for x in zip(*found))


def best_subset(fires: np.ndarray, matches: np.ndarray, n_fire: int, max_patterns: int) -> np.ndarray:
    """Indices of the <= max_patterns disjoint patterns whose union has the highest F1 = 2·Σfires / (Σmatches +
    n_fire). Dinkelbach's method: for the current ratio λ the best set is the top max_patterns of 2·fires - λ·matches
    that are > 0; λ rises to that set's F1 until it stops rising (exact, in a few steps)."""
    lam, chosen = 0.0, np.zeros(0, dtype=np.int64)
    fires, matches = fires.astype(np.float64), matches.astype(np.float64)
    while True:
        gain = 2 * fires - lam * matches
        top = np.argsort(-gain, kind='stable')[:max_patterns]
        pick = top[gain[top] > 0]
        f1 = 2 * fires[pick].sum() / (matches[pick].sum() + n_fire) if len(pick) else 0.0
        if f1 <= lam * (1 + 1e-12):
            return chosen
        lam, chosen = f1, pick


def f1_score(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """precision (0 when nothing is predicted), recall, F1 (0 when both are 0)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def explain_and_score(fire_explain: list[np.ndarray], fire_score: list[np.ndarray], tokens_explain: np.ndarray,
                      tokens_score: np.ndarray, vocab_size: int, min_precision: float = 0.5,
                      min_pattern_fires: int = 2, max_patterns: int = 10) -> list[dict]:
    """Each unit's explanation (from its firings on tokens_explain (n, T)) and score (on tokens_score (m, T)).
    fire_explain[u] / fire_score[u]: the flat positions (into tokens_*.reshape(-1)) where unit u fires.
    Per unit: patterns (token-id lists), pattern_precision and pattern_fires (on the EXPLAIN tokens),
    n_fire_explain, n_fire_score, tp, fp, fn and precision, recall, f1 on the SCORE tokens: None when the unit never
    fires on the EXPLAIN tokens (no explanation: not scored); 0, 0, 0 when it fires there but never on the SCORE
    tokens (SCORED_RULE)."""
    keys_explain, keys_score = ngram_keys(tokens_explain, vocab_size), ngram_keys(tokens_score, vocab_size)
    counts_explain, counts_score = NgramCounts(keys_explain), NgramCounts(keys_score)
    units = []
    for fe, fs in zip(fire_explain, fire_score):
        fe, fs = np.asarray(fe, dtype=np.int64), np.asarray(fs, dtype=np.int64)
        order, key, fires, matches = candidate_patterns(keys_explain[:, fe], counts_explain, min_precision,
                                                        min_pattern_fires)
        pick = best_subset(fires, matches, len(fe), max_patterns)
        pick = pick[np.argsort(-fires[pick], kind='stable')]  # the patterns covering most firings first
        order, key = order[pick], key[pick]
        tp = sum(int(np.isin(keys_score[o - 1, fs], key[order == o]).sum()) for o in range(1, ORDERS + 1))
        predicted = sum(int(counts_score.count(o, key[order == o]).sum()) for o in range(1, ORDERS + 1))
        scored = len(fe) > 0  # no SCORE firing: f1_score(0, fp, 0) = (0, 0, 0)
        precision, recall, f1 = f1_score(tp, predicted - tp, len(fs) - tp) if scored else (None, None, None)
        units.append({
            'patterns': [key_pattern(k, o, vocab_size) for o, k in zip(order.tolist(), key.tolist())],
            'pattern_precision': (fires[pick] / matches[pick]).tolist(), 'pattern_fires': fires[pick].tolist(),
            'n_fire_explain': len(fe), 'n_fire_score': len(fs), 'tp': tp, 'fp': predicted - tp,
            'fn': len(fs) - tp, 'precision': precision, 'recall': recall, 'f1': f1})
    return units


# ----------------------------------------------------------------------------- summaries and text

def summarize(units: list[dict]) -> dict:
    """The score distribution of a set of units, both ways (SCORED_RULE): n_units, n_dead_explain (never fire on the
    EXPLAIN tokens: left out), n_no_score_firings (fire there, never on the SCORE tokens: F1 0), then over the scored
    units (n_scored = n_units - n_dead_explain) median and mean F1, the share above 0.5, median precision and recall,
    a histogram of F1 over HIST_EDGES; and the same over the scored units that fire on the SCORE tokens
    ('with_score_firings')."""
    def stats(part: list[dict]) -> dict:
        f1 = np.array([u['f1'] for u in part], dtype=np.float64)
        stat = (lambda f, x: round(float(f(x)), 4) if len(x) else None)
        return {'n_scored': len(part), 'median_f1': stat(np.median, f1), 'mean_f1': stat(np.mean, f1),
                'share_f1_above_0.5': stat(np.mean, f1 > 0.5),
                'median_precision': stat(np.median, np.array([u['precision'] for u in part])),
                'median_recall': stat(np.median, np.array([u['recall'] for u in part])),
                'f1_hist': {'edges': [round(float(e), 4) for e in HIST_EDGES],
                            'counts': np.histogram(f1, bins=HIST_EDGES)[0].tolist()}}
    scored = [u for u in units if u['f1'] is not None]
    with_score_firings = [u for u in scored if u['n_fire_score'] > 0]
    return {'n_units': len(units), 'n_dead_explain': len(units) - len(scored),
            'n_no_score_firings': len(scored) - len(with_score_firings), **stats(scored),
            'with_score_firings': stats(with_score_firings)}


def token_text(tok: int, vocab: list) -> str:
    """A token as Python would quote it: '\\n    ', ' if', or b'\\xe2' for a piece of a UTF-8 character."""
    text = vocab[tok] if 0 <= tok < len(vocab) else f'<{tok}>'
    return repr(bytes(text)) if isinstance(text, list) else repr(text)


def pattern_text(pattern: list[int], vocab: list) -> str:
    """"'%' after '>>>' ' '": the unit's token, then the tokens before it."""
    last = token_text(pattern[-1], vocab)
    return last if len(pattern) == 1 else f"{last} after {' '.join(token_text(t, vocab) for t in pattern[:-1])}"


def explanation_text(patterns: list[list[int]], vocab: list) -> str:
    return ' | '.join(pattern_text(p, vocab) for p in patterns) if patterns else '(no pattern)'
