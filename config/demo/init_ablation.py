# The paper's recipe (anthropic2023) from its own initialisation vs the tied start (issue 21): dead and resampled
# neurons both ways, on the demo store (after make demo): the demo sweep's anthropic2023 members and the demo's SAE
# size with the paper's recipe (python train_sae.py config/demo/sae.py --kind=anthropic2023 --l1_coeff=3e-3):
#   python train_sae.py config/demo/init_ablation.py        # after make demo; --init_from=resume skips what is done
# writes out/demo/init_ablation/sweep/<name>/metrics.json (resampled: the count at every resampling) + pareto.json.
exec(open('config/demo/sweep.py').read())  # the demo sweep's run keys, then its own SAEs
sweep = [dict(name=f'anthropic2023_{n}_l1_{lam}_{init}', kind='anthropic2023', n_features=n, l1_coeff=float(lam),
              weight_init=init)
         for n, lam in ((512, '1e-3'), (512, '3e-3'), (2048, '3e-3')) for init in ('paper', 'tied')]
out_dir = 'out/demo/init_ablation'
activations_dir = 'out/demo/activations'
transformer_ckpt = 'out/demo/transformer/ckpt.pt'
