"""analyze.py's sparse probes of the ground-truth concepts on the tiny runs of test_analyze.py, with labels planted
here: every concept's ranked units (|mean difference| on the EXPLAIN tokens) and every probe's balanced accuracy on
the SCORE tokens against brute force (an independent L-BFGS fit), a feature equal to a concept probed perfectly by
itself, the summary and plot; the fit against a known solution, the token sample disjoint across the splits,
balanced, seeded."""
import json
import os

import numpy as np
import pytest
import torch

from monosemanticity.concept_probe import PROBE_KS, PROBE_L2, PROBE_PER_CLASS, fit_logistic, probe_tokens
from monosemanticity.concept_report import UNIT_SETS, load_concept_labels
from conftest import run_script, write_concept_labels
from test_analyze import ARGS, T, brute, runs  # noqa: F401  (the two tiny runs and their activations, as fixtures)


@pytest.fixture(scope='module')
def labelled(runs, brute):  # noqa: F811
    """Labels written next to the tiny dataset, then analyze.py again: 'planted' (a feature above the middle of the
    widest gap between its activations from their 80th to 98th percentile, the feature and gap of widest gap / std:
    a concept that feature alone separates with a margin), even tokens, random bits, never. Returns the labels, the
    planted feature and the new report."""
    rep = runs['report']
    starts = rep['tokens']['context_starts']
    acts = brute['features']  # (n, T, u)
    best = (-1.0, 0, 0.0)  # gap / std, feature, threshold
    for u in range(acts.shape[-1]):
        v = np.sort(acts[:, :, u].reshape(-1))
        top = v[int(0.8 * len(v)):int(0.98 * len(v))]
        i = int(np.diff(top).argmax())
        best = max(best, ((top[i + 1] - top[i]) / max(v.std(), 1e-12), u, (top[i] + top[i + 1]) / 2))
    _, unit, threshold = best
    val = np.fromfile(os.path.join(runs['data'], 'val.bin'), dtype=np.uint16)
    names = ['planted', 'even_token', 'random', 'never']
    y = np.zeros((len(val), len(names)), dtype=bool)
    for c, s in enumerate(starts):
        y[s:s + T, 0] = acts[c, :, unit] > threshold
    y[:, 1] = val % 2 == 0
    y[:, 2] = np.random.default_rng(0).random(len(val)) < 0.2
    write_concept_labels(runs['data'], names, y)
    p = run_script('analyze.py', f"--out_dir={runs['a']}", f"--run_b={runs['b']}", *ARGS)
    report = json.load(open(os.path.join(runs['a'], 'analysis', 'report.json')))
    return {'y': y, 'names': names, 'unit': unit, 'report': report, 'stdout': p.stdout}


def split_acts(brute: dict, labelled: dict, name: str) -> tuple[np.ndarray, ...]:  # noqa: F811
    """(n_explain*T, u), (n_explain*T, C), (n_score*T, u), (n_score*T, C): the units and labels of each split."""
    tok = labelled['report']['tokens']
    y = np.stack([labelled['y'][s:s + T] for s in tok['context_starts']])  # (n, T, C)
    acts = brute[name]
    return tuple(a[tok[part]].reshape(len(tok[part]) * T, -1) for part in ('explain', 'score') for a in (acts, y))


def reference_balanced_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                                l2: float) -> float:
    """The probe by torch's L-BFGS on the objective written out: inputs standardised by the training mean and
    (n-1) std, each class weighing 1/2 of the mean log loss, l2/2·|w|² (no bias penalty); its balanced accuracy."""
    mean, std = x_train.mean(0), x_train.std(0, ddof=1)
    std = np.where(std > 0, std, 1)
    xs, xt = (torch.from_numpy((x - mean) / std) for x in (x_train, x_test))
    y = torch.from_numpy(y_train).double()
    weight = torch.from_numpy(np.where(y_train, 0.5 / y_train.sum(), 0.5 / (~y_train).sum()))
    theta = torch.zeros(xs.size(1) + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], lr=1, max_iter=2000, tolerance_grad=1e-13, tolerance_change=1e-16,
                            history_size=50, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        z = xs @ theta[:-1] + theta[-1]
        loss = (weight * (torch.nn.functional.softplus(z) - y * z)).sum() + 0.5 * l2 * (theta[:-1] ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    pred = (xt @ theta[:-1] + theta[-1] > 0).detach().numpy()
    return 0.5 * (pred[y_test].mean() + (~pred[~y_test]).mean())


@pytest.mark.parametrize('name', UNIT_SETS)
def test_units_ranked_by_standardised_mean_difference_on_explain_tokens(brute, labelled, name):  # noqa: F811
    a_e, y_e, _, _ = split_acts(brute, labelled, name)
    for c, row in enumerate(labelled['report']['concepts']['concepts']):
        if row['probe'] is None:
            continue
        pos = y_e[:, c]
        std = a_e.std(0)
        diff = np.where(std > 0, np.abs(a_e[pos].mean(0) - a_e[~pos].mean(0)) / np.where(std > 0, std, 1), 0)  # (u,)
        units = row['probe'][name]['units']
        assert len(units) == len(set(units)) == min(max(PROBE_KS), a_e.shape[1])
        tol = 1e-6 * diff.max()
        assert np.all(np.diff(diff[units]) <= tol)  # largest first
        others = np.setdiff1d(np.arange(a_e.shape[1]), units)
        assert diff[units].min() >= diff[others].max() - tol  # and none left out larger


@pytest.mark.parametrize('name', UNIT_SETS)
def test_probes_against_brute_force(brute, labelled, name):  # noqa: F811
    """On the tiny run each class has fewer than PROBE_PER_CLASS tokens: the samples are all the EXPLAIN tokens
    (training) and all the SCORE tokens (test)."""
    a_e, y_e, a_s, y_s = split_acts(brute, labelled, name)
    sec = labelled['report']['concepts']
    assert sec['probe']['k'] == list(PROBE_KS) and sec['probe']['l2'] == PROBE_L2
    n_probed = 0
    for c, row in enumerate(sec['concepts']):
        counts = [int(y_e[:, c].sum()), int((~y_e[:, c]).sum()), int(y_s[:, c].sum()), int((~y_s[:, c]).sum())]
        assert max(counts) < PROBE_PER_CLASS
        if min(counts) == 0:
            assert row['probe'] is None
            continue
        n_probed += 1
        p = row['probe']
        assert p['n_train'] + p['n_test'] == counts
        units = p[name]['units']
        for k in PROBE_KS:
            want = reference_balanced_accuracy(a_e[:, units[:k]], y_e[:, c], a_s[:, units[:k]], y_s[:, c], PROBE_L2)
            assert p[name]['balanced_accuracy'][str(k)] == pytest.approx(want, abs=1e-4), (row['name'], k)
    assert n_probed == sec['summary']['probe']['n_concepts_probed'] == 3


def test_a_feature_equal_to_the_concept_is_probed_perfectly_by_itself(labelled):  # noqa: F811
    rows = {r['name']: r for r in labelled['report']['concepts']['concepts']}
    p = rows['planted']['probe']['features']
    assert min(rows['planted']['probe']['n_train'] + rows['planted']['probe']['n_test']) >= 5
    assert p['units'][0] == labelled['unit'] and p['balanced_accuracy']['1'] == 1.0
    assert rows['random']['probe']['features']['balanced_accuracy']['1'] < 0.65  # random bits: no unit predicts them
    assert rows['never']['probe'] is None  # no positive token: not probed


def test_summary_line_and_plot(runs, labelled):  # noqa: F811
    sec = labelled['report']['concepts']
    probed = [r['probe'] for r in sec['concepts'] if r['probe'] is not None]
    for name in UNIT_SETS:
        for k in PROBE_KS:
            acc = [p[name]['balanced_accuracy'][str(k)] for p in probed]
            s = sec['summary']['probe'][name][str(k)]
            assert s['median'] == pytest.approx(np.median(acc), abs=1e-4)
            assert s['mean'] == pytest.approx(np.mean(acc), abs=1e-4)
            assert (s['q25'], s['q75']) == pytest.approx(tuple(np.quantile(acc, (0.25, 0.75))), abs=1e-4)
    assert 'sparse probes (3 concepts), median held-out balanced accuracy at k = 1 / 2 / 5 / 20' in labelled['stdout']
    png = os.path.join(runs['a'], 'analysis', 'probing.png')
    assert open(png, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


# ----------------------------------------------------------------------------- the parts

def test_fit_is_the_class_balanced_optimum():
    """Two input values: the balanced fit (without penalty) puts each one's logit at its weighted log-odds, known in
    closed form; an unweighted fit would put them at the raw log-odds."""
    x = torch.tensor([1.0] * 40 + [-1.0] * 60, dtype=torch.float64)[:, None]
    y = torch.tensor([True] * 30 + [False] * 10 + [True] * 10 + [False] * 50)  # 40 positives, 60 negatives
    w_pos, w_neg = 0.5 / 40, 0.5 / 60
    logit_plus, logit_minus = np.log(30 * w_pos / (10 * w_neg)), np.log(10 * w_pos / (50 * w_neg))
    theta = fit_logistic(x, y, l2=0.0)
    assert float(theta[0]) == pytest.approx((logit_plus - logit_minus) / 2, abs=1e-9)
    assert float(theta[1]) == pytest.approx((logit_plus + logit_minus) / 2, abs=1e-9)


@pytest.mark.parametrize('separable', [False, True])
def test_fit_zeroes_the_penalised_gradient(separable):
    """Imbalanced synthetic data (separable or not): the gradient of the balanced, penalised objective is 0 at the
    fit (on separable data too: the penalty keeps the weights finite)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 5, generator=g, dtype=torch.float64)
    y = x[:, 0] + (0 if separable else 1.0) * torch.randn(3000, generator=g, dtype=torch.float64) > 1.5
    theta = fit_logistic(x, y).requires_grad_()
    weight = torch.where(y, 0.5 / y.sum(), 0.5 / (~y).sum())
    z = x @ theta[:-1] + theta[-1]
    penalty = 0.5 * PROBE_L2 * (theta[:-1] ** 2).sum()
    loss = (weight * (torch.nn.functional.softplus(z) - y.double() * z)).sum() + penalty
    loss.backward()
    assert float(theta.grad.abs().max()) < 1e-9


def test_sample_is_disjoint_across_the_splits_balanced_and_seeded(runs, labelled):  # noqa: F811
    tok = labelled['report']['tokens']
    starts, is_explain = np.array(tok['context_starts']), np.zeros(len(tok['context_starts']), dtype=bool)
    is_explain[tok['explain']] = True
    labels = load_concept_labels(runs['data'], 'val', len(labelled['y']))
    y = np.stack([labelled['y'][s:s + T] for s in starts]).reshape(len(starts) * T, -1)  # (n*T, C)
    sample = probe_tokens(labels, starts, T, is_explain, seed=5, per_class=20)
    assert np.all(np.diff(sample.token) >= 0)
    assert np.array_equal(sample.label, y[sample.token, sample.concept])  # each token's own label
    assert np.array_equal(sample.test, ~is_explain[sample.token // T])  # test tokens SCORE, training tokens EXPLAIN
    for c in range(y.shape[1]):
        for test in (False, True):
            in_part = is_explain[np.arange(len(y)) // T] != test
            for label in (True, False):
                mine = (sample.concept == c) & (sample.test == test) & (sample.label == label)
                assert mine.sum() == min(20, int((in_part & (y[:, c] == label)).sum()))
                assert len(np.unique(sample.token[mine])) == mine.sum()
    again, other = (probe_tokens(labels, starts, T, is_explain, seed=s, per_class=20) for s in (5, 6))
    assert all(np.array_equal(a, b) for a, b in zip(sample, again))
    assert not np.array_equal(sample.token, other.token)
