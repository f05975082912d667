"""A sweep's evaluations share the passes that do not depend on the SAE (train_sae.py run as a user runs it, with
model.GPT.run counted): each eval batch's clean forward runs once for all the SAEs evaluated at that step, and each
SAE's metrics.json is bitwise what train_sae.py writes when it evaluates that SAE alone.

Bitwise, not to float rounding: the clean log-probs an SAE's KL and CE are taken against come from the same
forward on the same batch whether one SAE or many are evaluated, its spliced forward runs on the same inputs with the
same shapes, and every sum is accumulated per SAE in the same batch order; nothing is reduced across SAEs."""
import json
import os

import pytest

from conftest import harvested_run, run_script

ARGS = ['--n_features=64', '--batch_size=256', '--resample_steps=(15,)', '--resample_rows=2000',
        '--geometric_median_rows=1000', '--eval_interval=20', '--eval_contexts=8', '--final_eval_contexts=32',
        '--eval_batch_size=16', '--log_interval=10', '--device=cpu', '--shuffle_buffer=2048', '--ckpt_interval=20',
        '--max_steps=40', '--lr=1e-3']
# periodic evaluation at step 20 on 8 contexts (1 batch), final on 32 (2 batches of 16)
PERIODIC_BATCHES, FINAL_BATCHES = 1, 2
SWEEP = [dict(name='topk_k8', kind='topk', k=8), dict(name='btk_k8', kind='batchtopk', k=8),
         dict(name='a23', kind='anthropic2023', l1_coeff=3e-3)]
NOT_EVAL = ('train_seconds_this_run', 'tokens_per_s_this_run', 'config')  # the resumed run's timing and init_from

# train_sae.py with model.GPT.run counted: a forward with a replacement is a spliced or ablated one, one with targets
# and no replacement a clean pass; the counts are written to COUNTS at exit
COUNTING = '''
import atexit, json, os, runpy, sys
sys.path.insert(0, os.getcwd())
import model
counts = {'clean': 0, 'replaced': 0}
run = model.GPT.run
def counted(self, idx, targets=None, capture=(), replace=None, **kw):
    if replace:
        counts['replaced'] += 1
    elif targets is not None:
        counts['clean'] += 1
    return run(self, idx, targets, capture, replace, **kw)
model.GPT.run = counted
atexit.register(lambda: json.dump(counts, open(os.environ['COUNTS'], 'w')))
sys.argv = sys.argv[1:]
runpy.run_path('train_sae.py', run_name='__main__')
'''


@pytest.fixture(scope='module')
def run(tmp_path_factory) -> dict:
    """A tiny transformer, its harvest, the sweep's config file and the counting wrapper."""
    root = tmp_path_factory.mktemp('sweep_eval')
    out = harvested_run(root, 40, 300)
    (root / 'sweep_conf.py').write_text(f"sweep = {SWEEP!r}\n")
    (root / 'counting.py').write_text(COUNTING)
    return {'root': root, 'out': out}


def counted_run(run: dict, *extra: str) -> dict:
    """train_sae.py's sweep in <root>/sweep_run (extra flags added); the number of clean and replaced forwards."""
    root, out = run['root'], run['out']
    counts = str(root / 'counts.json')
    run_script(str(root / 'counting.py'), 'train_sae.py', str(root / 'sweep_conf.py'), f'--out_dir={root}/sweep_run',
               f'--activations_dir={out}/activations', f'--transformer_ckpt={out}/transformer/ckpt.pt', *ARGS, *extra,
               env={'COUNTS': counts})
    return json.load(open(counts))


def metrics(run: dict, name: str) -> dict:
    m = json.load(open(os.path.join(run['root'], 'sweep_run', 'sweep', name, 'metrics.json')))
    return {k: v for k, v in m.items() if k not in NOT_EVAL}


def test_a_sweep_runs_the_clean_pass_once_per_batch_and_each_sae_gets_its_lone_metrics(run):
    n = len(SWEEP)
    counts = counted_run(run)
    batches = PERIODIC_BATCHES + FINAL_BATCHES
    # one clean forward per eval batch for the whole sweep (not one per SAE); each SAE its spliced forward per
    # batch; the zero and mean ablations once per batch of each set of contexts (periodic and final)
    assert counts == {'clean': batches, 'replaced': n * batches + 2 * batches}, counts
    in_sweep = {s['name']: metrics(run, s['name']) for s in SWEEP}
    for s in SWEEP:  # each SAE evaluated alone: its metrics.json deleted, the finished sweep resumed
        os.remove(os.path.join(run['root'], 'sweep_run', 'sweep', s['name'], 'metrics.json'))
        counts = counted_run(run, '--init_from=resume')
        assert counts == {'clean': FINAL_BATCHES, 'replaced': FINAL_BATCHES + 2 * FINAL_BATCHES}, (s['name'], counts)
        alone = metrics(run, s['name'])
        assert alone == in_sweep[s['name']], s['name']
        assert alone['eval_tokens'] == 32 * 32 and 0 < alone['loss_recovered'] <= 1
