# The paper's recipe (anthropic2023) from its own initialisation vs the tied start (issue 21): dead and resampled
# neurons both ways, on the demo store (after make demo), as the demo sweep's anthropic2023 members:
#   python train_sae.py config/demo/sweep.py; python train_sae.py config/demo/init_ablation.py
# writes out/demo/init_ablation/sweep/<name>/metrics.json (resampled: the count at every resampling) + pareto.json.
exec(open('config/demo/sweep.py').read())  # the demo sweep's run keys, then its own SAEs
sweep = [dict(name=f'anthropic2023_512_l1_{lam}_{init}', kind='anthropic2023', n_features=512, l1_coeff=float(lam),
              weight_init=init) for lam in ('1e-3', '3e-3') for init in ('paper', 'tied')]
out_dir = 'out/demo/init_ablation'
activations_dir = 'out/demo/activations'
transformer_ckpt = 'out/demo/transformer/ckpt.pt'
