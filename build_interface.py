"""
Build the static feature browser of a trained SAE: <out_dir>/interface/index.html (opens from file://).

    python build_interface.py config/demo/interface.py            # CPU demo (out/demo), ~1-2 min on 2 cores
    python build_interface.py config/interface.py                 # the seed's scale (out/owt)
    python build_interface.py config/demo/interface.py --n_contexts=256 --ablation=none   # quicker look

Inputs: <out_dir>/transformer/ckpt.pt, <out_dir>/sae/ (SAELens layout: sae_weights.safetensors + cfg.json)
and the dataset's <split>.bin + meta.json (+ tokenizer file). Output: <out_dir>/interface/ with index.html
(all features: sortable/searchable table, density histogram), feature.html?f=ID (one feature, all panels) and
examples.html (activations on example texts), the repo's interface/ assets, and the data as .js files loaded
with <script src> (no server, no fetch()). The data files and every key in them: docs/browser.md.
Built in a temp folder that replaces the old one at the end, so a half-built site is never taken for a
complete one. An SAE or transformer with NaN/inf weights is refused (one line naming the tensor).

With analyze.py's report (<out_dir>/analysis/report.json, found when analysis='auto', or --analysis=<report>) the
pages also show each feature's offline explanation, its held-out F1 and its best match in the other run, and, when
the report has ground-truth concepts (label_concepts.py), run A's site concepts.html (every concept's best feature
and neuron), each feature's concepts (held-out F1 >= 0.5) and index.html?concept=NAME (the features detecting it):
    python build_interface.py config/demo/interface.py --out_dir=out/demo/run_b --analysis=out/demo/analysis/report.json

A sweep (train_sae.py's `sweep`: many SAEs of one stream in <out_dir>/sweep/<name>/) as one site:
    python build_interface.py config/demo/interface.py --sweep_dir=out/demo/sweep
    python build_interface.py config/demo/interface.py --sweep_dir=out/demo/sweep --family_link=decoder
writes <sweep_dir>/interface/: <name>/ for every SAE (its site as above, each feature record with its
`relatives` in the other sizes of its family), index.html (every SAE, the families, the Pareto plot) and
family.html?family=NAME (how the smallest dictionary's features split and merge in the larger ones: each
feature's parents are the features of the next smaller SAE scoring >= family_threshold with it, by family_link).
The families and their links are <sweep_dir>/families.json (monosemanticity/families.py), computed first when
absent, older than an SAE, or linked with other family_link / family_threshold / family_min_density /
family_contexts / split / seed.

All statistics are computed for all features at once, in streaming passes over n_contexts contexts
(RAM does not grow with n_contexts; nothing of size n_tokens x n_features is kept). A sweep's SAEs share them: each
batch of contexts goes through the transformer once per pass and feeds every SAE's statistics (one SAE is a sweep of
one: a member's site is, file for file, its SAE's site built alone plus its relatives):
  pass 1  density, max/mean activation, top_k contexts per feature (one example per context), the tokens each
          feature fires on, co-activation counts (first coact_tokens tokens), the final residual's scale
  pass 2  activation histograms and the n_intervals equal-width intervals of (0, max]: their share of the
          activations and interval_samples random examples each (one per context)
  pass 3  only the shown windows (±window tokens): per-token activations and the ablation effect: the change
          of the log-prob of each actual next token when the feature's contribution f_i·W_dec[i] is removed
          from the site. Exact and cheap for a site in the last layer (the MLP output reaches only the logits
          of its own position); other sites rerun the model per window (ablation='rerun').
  then    logit weights (decoder direction -> c_proj -> final LayerNorm linearised: centred, times ln_f.weight,
          times E[1/σ] of the final residual -> unembedding), decoder-cosine and co-activation neighbours,
          example texts, and the site.
"""
import os

import torch

from configurator import config_keys, configure
from monosemanticity.common import exit_on_user_error, get_device, print0, resolve_dtype
from monosemanticity.runs import load_inputs, load_transformer
from monosemanticity.site import SiteSettings, build_site, swap_in, temp_dir_for
from monosemanticity.site_analysis import find_analysis
from monosemanticity.sweep_site import build_sweep_site

# -----------------------------------------------------------------------------
out_dir = 'out'
transformer_ckpt = ''  # '' = <out_dir>/transformer/ckpt.pt
sae_dir = ''  # '' = <out_dir>/sae (sae_weights.safetensors + cfg.json, SAELens layout)
sweep_dir = ''  # '' = one SAE; else a sweep (<out_dir>/sweep): one site of all its SAEs in <sweep_dir>/interface/
dataset = ''  # '' = the dataset the transformer was trained on (a name under data/ or a path)
split = 'val'
n_contexts = 2048  # contexts (non-overlapping chunks of the split, picked at random) the statistics cover
context_length = 0  # tokens per context; 0 = the model's block_size
batch_size = 32  # contexts per forward pass
top_k = 20  # top-activating examples per feature (at most one per context)
window = 8  # tokens shown either side of an example's token
n_intervals = 12  # equal-width activation intervals of (0, max] ...
interval_samples = 5  # ... and random examples shown from each
n_example_texts = 25  # texts on examples.html
example_length = 128  # tokens per example text
coact_tokens = 65536  # tokens over which co-activation is counted (0 = all)
dense_stats_mb = 256  # (F, V) token counts, (F, F) co-activation counts, (F, V) logit effects: each dense if it
# fits in this many MB, else exact sparse counts / logit rows computed a block of this size at a time
ablation = 'auto'  # 'auto' (exact local formula where valid, else 'rerun'), 'rerun' (model per window), 'none'
seed = 1337
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', ...
dtype = 'float32'  # 'float32', 'bfloat16', 'float16' or 'auto' (for the transformer and SAE forward passes)
analysis = 'auto'  # analyze.py's report shown: 'auto' (<out_dir>/analysis/report.json if it is of this SAE), '', a path
neuronpedia = False  # also write the site's data in Neuronpedia's upload format: <site>/neuronpedia/
# a sweep's feature families (monosemanticity/families.py): how features are linked across sizes
family_link = 'masked'  # the score of parents and relatives: 'masked' activation cosine (the paper's: the cosine on
# the tokens where one of the two fires, the greater of the two), 'decoder' cosine, or 'activation' correlation
family_threshold = 0.4  # a parent scores >= this with its child (the paper links above ~0.4); none, one or several
family_min_density = 1e-5  # features firing on fewer of the family's tokens are not linked: the paper's
# ultralow-density cluster (the ultralow cut of monosemanticity/metrics.py); on 64 x 256 tokens only the silent ones
family_contexts = 64  # random contexts of the split whose tokens the activation scores cover
# -----------------------------------------------------------------------------
CONFIG_KEYS = config_keys(globals())  # the keys above are the config
# not in a single SAE's meta.json:
SWEEP_ONLY = ('sweep_dir', 'family_link', 'family_threshold', 'family_min_density', 'family_contexts')


def main() -> None:
    exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2
    config = configure({k: globals()[k] for k in CONFIG_KEYS})  # config files and --key=value overrides
    settings = SiteSettings.from_config(config)  # checked: a value out of range is one line naming the key
    run_device = get_device(config['device'])
    torch.manual_seed(config['seed'])

    # the transformer and its dataset
    transformer = load_transformer(config['out_dir'], config['transformer_ckpt'], config['dataset'],
                                   config['context_length'], run_device, resolve_dtype(config['dtype'], run_device))

    # a sweep: every SAE of it, linked across sizes, in one site
    if config['sweep_dir']:
        if config['analysis'] not in ('', 'auto'):
            print0(f"note: a sweep site shows no analysis (analysis={config['analysis']} is not used)")
        site_dir = build_sweep_site(config['sweep_dir'], transformer, settings, without(config, 'analysis'))
        print0(f"open {os.path.abspath(os.path.join(site_dir, 'index.html'))}")
        return

    # one SAE: its inputs, the analysis shown (if any), then the passes and the pages in a temp folder swapped in
    inputs = load_inputs(transformer, config['sae_dir'] or os.path.join(config['out_dir'], 'sae'))
    shown = find_analysis(config['analysis'], config['out_dir'], inputs.sae_path, len(inputs.W_dec))
    final_dir = os.path.join(config['out_dir'], 'interface')
    tmp_dir = temp_dir_for(final_dir)
    build_site(inputs, tmp_dir, settings, without(config, 'analysis', *SWEEP_ONLY), analysis=shown)
    site_dir = swap_in(tmp_dir, final_dir)
    print0(f"open {os.path.abspath(os.path.join(site_dir, 'index.html'))}")


def without(config: dict, *keys: str) -> dict:
    """The config kept in meta.json: the analysis shown is in INDEX.meta.analysis; a sweep's keys only in a sweep's."""
    return {k: v for k, v in config.items() if k not in keys}


if __name__ == '__main__':
    main()
