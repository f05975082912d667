"""
The paper's findings measured on a run: offline automated interpretability of the SAE's features against the
model's neurons, and the universality of features (and of neurons) across two transformers trained from
different seeds. No LLM: explanations are token patterns (monosemanticity/explanations.py), scored on held-out
tokens.

    python analyze.py config/demo/analysis.py       # after make demo and run B (make analysis), ~1-2 min on 2 cores

Run A is out_dir, run B is run_b (<out_dir>/run_b): the same pipeline with another seed, e.g. for the demo
    python train_transformer.py config/demo/transformer.py --out_dir=out/demo/run_b --seed=1338
    python generate_activations.py config/demo/activations.py --out_dir=out/demo/run_b
    python train_sae.py config/demo/sae.py --out_dir=out/demo/run_b
Both SAEs must read the same site of transformers trained on the same dataset.

The method (also stated in report.json's 'rule'):
  tokens    n_contexts random val contexts; a random permutation puts round(explain_frac·n) of them in the EXPLAIN
            split and the rest in the SCORE split. Explanations come from EXPLAIN tokens only, scores from SCORE
            tokens only; universality uses all contexts.
  units     run A's SAE features ('features'), the neurons of their site in run A ('neurons'), run B's SAE
            features ('features_b').
  firing    a unit fires on a token when its activation > fire_frac × its max over the EXPLAIN tokens (features
            and neurons alike); a unit whose max is <= 0 has no threshold and is not scored.
  explain   token patterns (1-3 tokens, N2G-like) that account for its EXPLAIN firings
            (monosemanticity/explanations.py); precision, recall and F1 of "fires where a pattern matches" on the
            SCORE tokens. Output description: the n_output_tokens tokens whose logits its direction raises most
            (the feature browser's logit lens).
  scored    every unit that fires on the EXPLAIN tokens; one that never fires on the SCORE tokens scores F1 0
            (explanations.SCORED_RULE). The summaries give the median F1 both ways: over every scored unit (the
            main number) and without those of no SCORE firing; units dead on the EXPLAIN tokens are counted apart.
  universal per unit of run A its best-correlated unit of run B (Pearson over all the contexts' tokens), features
            with features and neurons with neurons; and run B's features against run A's.
Streaming passes over the contexts (nothing of size n_tokens x n_units is kept):
  pass 1  per unit its max over the EXPLAIN tokens; the correlation sums (monosemanticity/families.py)
  pass 2  per unit the positions where it fires, in the EXPLAIN and in the SCORE tokens; when the dataset has
          ground-truth concept labels (label_concepts.py), the concept counts of features and neurons above each
          threshold of a grid (monosemanticity/concept_report.py): per concept its best single feature and neuron,
          threshold and unit chosen on the EXPLAIN tokens, precision / recall / F1 on the SCORE tokens; and each
          unit's mean activation on each concept's EXPLAIN tokens and off them, for the sparse probes
  pass 3  (concept labels only) run A's forwards again: where each concept's 32 candidate features fire, for its
          spread (the features ORed, greedily, to reach F1 0.9); and the activations of each concept's top 20
          features and top 20 neurons (by |mean difference| / std) on a sample of its tokens, for its sparse probes
          (monosemanticity/concept_probe.py: logistic regressions on the top k = 1, 2, 5, 20 units, fit on EXPLAIN
          tokens, balanced accuracy on SCORE tokens)
Writes <out_dir>/analysis/: report.json (its format: docs/formats.md), interpretability.png (F1 of features vs
neurons), universality.png (max correlations), and with concept labels concepts.png (best feature vs best neuron
per concept) and probing.png (the sparse probes' balanced accuracy against k, features vs neurons), built in a temp
folder swapped in when complete.
"""
import os
import time

import numpy as np
import torch

from configurator import config_keys, configure
from monosemanticity.common import atomic_file, exit_on_user_error, get_device, next_command, print0
from monosemanticity.concept_probe import (PROBE_KS, MeanDifferences, ProbeActivations, plot_probing,
                                           probe_results, probe_summary_line, probe_tokens)
from monosemanticity.concept_report import (ConceptCounts, concepts_section, concepts_summary_line,
                                            load_concept_labels, pass3_spread_firings, plot_concepts,
                                            spread_candidates, UNIT_SETS)
from monosemanticity.findings import (AnalysisSettings, analysis_dir, analysis_report, best_matches, explain_all,
                                      firing_thresholds, load_runs, pass1_maxima_and_correlations, pass2_firings,
                                      pick_split, plot_interpretability, plot_universality, report_json,
                                      summary_table)
from monosemanticity.site import swap_in, temp_dir_for, timed

# -----------------------------------------------------------------------------
out_dir = 'out'  # run A (transformer/, sae/); the analysis goes to <out_dir>/analysis/
run_b = ''  # run B, the same pipeline from another seed; '' = <out_dir>/run_b
sae_dir = ''  # the SAE's folder inside each run; '' = sae (<out_dir>/sae and <run_b>/sae), e.g. sweep/topk_k20
dataset = ''  # '' = the dataset the transformers were trained on (a name under data/ or a path)
split = 'val'
n_contexts = 1024  # random contexts of the split (non-overlapping), shared by both runs
explain_frac = 0.5  # share of the contexts whose tokens explanations are built from; the rest score them
context_length = 0  # tokens per context; 0 = the model's block_size
batch_size = 32  # contexts per forward pass
fire_frac = 0.5  # a unit fires where its activation > fire_frac x its max over the EXPLAIN tokens
min_precision = 0.5  # a pattern is kept if it predicts firing with at least this precision on EXPLAIN tokens ...
min_pattern_fires = 2  # ... and covers at least this many firings
max_patterns = 10  # patterns per explanation
n_output_tokens = 5  # output description: the tokens whose logits a unit raises most
seed = 1337
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', ...
dtype = 'float32'  # 'float32', 'bfloat16', 'float16' or 'auto' (the forward passes)
# -----------------------------------------------------------------------------
CONFIG_KEYS = config_keys(globals())  # the keys above are the config


def main() -> None:
    exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2
    config = configure({k: globals()[k] for k in CONFIG_KEYS})  # config files and --key=value overrides
    s = AnalysisSettings.from_config(config)  # checked: a value out of range is one line naming the key
    t_start, seconds = time.time(), {}
    torch.manual_seed(s.seed)

    # the two runs, and the EXPLAIN / SCORE split of random contexts
    runs = load_runs(s, get_device(config['device']))
    contexts, halves = pick_split(runs[0].transformer, s)
    print0(f"{contexts.n} contexts x {contexts.length} tokens of {runs[0].transformer.data_dir}/{s.split}.bin "
           f"({len(halves.explain)} explain, {len(halves.score)} score); units: "
           f"{runs[0].sae.sae.cfg.n_features} + {runs[1].sae.sae.cfg.n_features} features, "
           f"{runs[0].sae.sae.cfg.d_in} neurons of {runs[0].sae.site}; device {runs[0].transformer.device}")

    # the dataset's ground-truth concept labels (label_concepts.py), if it has them
    data_dir = runs[0].transformer.data_dir
    labels = load_concept_labels(data_dir, s.split, len(contexts.file))
    if labels is None:
        print0(f"no concept labels in {data_dir} (concepts.json): report.json gets no 'concepts' section; make them "
               f"with `python label_concepts.py --data_dir={data_dir}`")

    # pass 1: maxima and correlation sums; the firing thresholds; pass 2: where each unit fires (and the concept
    # counts of features and neurons above each threshold of their grid, and their class means for the sparse
    # probes); pass 3 (concepts only): where each concept's candidate features fire, for its spread, and the sparse
    # probes' tokens' activations of each concept's top units
    with timed(seconds, 'passes'):
        stats = pass1_maxima_and_correlations(runs, contexts, halves)
        thresholds = {name: firing_thresholds(m, s.fire_frac) for name, m in stats.explain_max.items()}
        counts = None if labels is None else ConceptCounts(labels, {n: stats.explain_max[n] for n in UNIT_SETS},
                                                           halves.is_explain, contexts.length)
        mean_diffs = None if labels is None else MeanDifferences(labels, halves.is_explain, contexts.length)

        def concept_sums(b0: int, b1: int, units: dict[str, torch.Tensor]) -> None:  # pass 2's batches
            counts.add_(contexts.starts[b0:b1], np.arange(b0, b1), units)
            mean_diffs.add_(contexts.starts[b0:b1], np.arange(b0, b1), units)
        firings = pass2_firings(runs, contexts, halves, thresholds, None if counts is None else concept_sums)
        probe = None if counts is None else ProbeActivations(
            probe_tokens(labels, contexts.starts, contexts.length, halves.is_explain, s.seed),
            mean_diffs.ranking(max(PROBE_KS)), contexts.length)
        spread = None if counts is None else pass3_spread_firings(runs, contexts, halves, spread_candidates(counts),
                                                                  labels, probe.add_)

    # explanations on the EXPLAIN tokens, scored on the SCORE tokens; universality across the runs
    with timed(seconds, 'explain'):
        interpretability = explain_all(runs, contexts, halves, thresholds, firings, s)
    with timed(seconds, 'concepts'):
        concepts = None if counts is None else concepts_section(counts, spread, probe_results(probe))
    with timed(seconds, 'universality'):
        universality = {'features': best_matches(stats.feature_sums.corr(0, 1), stats.feature_sums.n),
                        'neurons': best_matches(stats.neuron_sums.corr(0, 1), stats.neuron_sums.n),
                        'features_b': best_matches(stats.feature_sums.corr(0, 1).T, stats.feature_sums.n)}

    # the plots and report.json in a temp folder, swapped in when complete
    final_dir = analysis_dir(s.out_dir)
    tmp_dir = temp_dir_for(final_dir)
    os.makedirs(tmp_dir)
    with timed(seconds, 'plots'):
        plot_interpretability(interpretability, os.path.join(tmp_dir, 'interpretability.png'))
        plot_universality(universality, os.path.join(tmp_dir, 'universality.png'))
        if concepts is not None:
            plot_concepts(concepts, os.path.join(tmp_dir, 'concepts.png'))
            plot_probing(concepts, os.path.join(tmp_dir, 'probing.png'))
    seconds['total'] = time.time() - t_start
    report = {**analysis_report(config, s, runs, contexts, halves, interpretability, universality, seconds),
              **({} if concepts is None else {'concepts': concepts})}
    with atomic_file(os.path.join(tmp_dir, 'report.json'), 'w', encoding='ascii') as f:
        f.write(report_json(report) + '\n')
    swap_in(tmp_dir, final_dir)

    # the summary and the next commands
    print0(summary_table(interpretability, universality))
    if concepts is not None:
        print0(concepts_summary_line(concepts))
        print0(probe_summary_line(concepts))
    plots = 'interpretability.png, universality.png' + (', concepts.png, probing.png' if concepts is not None else '')
    print0(f"wrote {os.path.abspath(os.path.join(final_dir, 'report.json'))} (+ {plots}) in {seconds['total']:.0f}s")
    site_b = next_command('build_interface.py', 'interface', runs[1].out_dir)
    print0(f"next: {next_command('build_interface.py', 'interface', s.out_dir)}; "
           f"{site_b} --analysis={os.path.join(final_dir, 'report.json')}")


if __name__ == '__main__':
    main()
