"""
Mutation check of the recipes: break each recipe element, metric definition and data guard one at a time, in a
copy of the repo, and check that the test named for it fails. A guard whose test still passes is a test that
cannot fail: the run ends with exit code 1 and names it.

    python -m tools.guards                 # every guard, one at a time (not part of `make test`)
    python -m tools.guards --jobs 2        # two at a time, each in its own copy of the repo (303: 16 min, 2 cores)
    python -m tools.guards resampling L0   # only the guards whose element contains one of these words
    python -m tools.guards --check         # no test run: is every snippet where its anchor says (exit 1 if not)
    python -m tools.guards --markdown      # the table of docs/guards.md: element -> code -> test (no test run)

A guard's anchor names the def or class holding its snippet, 'autoencoder.py::sae_step_' ('Class.method' for a
method, the path alone for a script's top level or a .js file), so a function moved to another file is still
found: the guard runs there, and --check prints one `moved:` line to fix the anchor with. A snippet that is not
once in its anchor is STALE. GUARDS is the one list: `make readme` writes it into docs/guards.md,
tests/test_guards.py fails on a moved or stale anchor (so the list cannot silently go stale).
"""
import ast
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import lru_cache
from typing import NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Guard(NamedTuple):
    element: str  # what the recipe / metric / check is
    anchor: str  # where it is implemented: 'path.py::qualname' of the def or class holding the snippet
    # ('path.py::Class.method', 'path.py::outer.inner'); the path alone for code outside every def (a script's top
    # level) and for a file that is not Python
    old: str  # a snippet of the anchor, present exactly once in it and in its file
    new: str  # the same snippet with the element broken
    test: str  # the pytest node id (or file / -k expression) that must fail on the broken code


R, T, M = 'tests/test_recipes.py', 'tests/test_train_sae.py', 'tests/test_metrics.py'
SE = 'tests/test_sweep_eval.py'
K = 'tests/test_kinds.py'
C = 'tests/test_concepts.py'
CR = 'tests/test_concepts_report.py'
CA = 'tests/test_concept_axis.py'
CP = 'tests/test_concept_probe.py'
B = 'tests/test_browser.py::test_every_token_on_every_page_is_literal_text'
STEP = f'{R}::test_train_step_follows_the_published_recipe'
GUARDS = [
    # ---------------------------------------------------------------- anthropic2023 (Towards Monosemanticity)
    Guard('pre-encoder bias: x − b_dec enters the encoder (fused step)', 'autoencoder.py::FusedL1Loss.forward',
          'torch.addcmul(-b_dec, x, s, out=xa[:, :d])', 'torch.mul(x, s, out=xa[:, :d])', STEP),
    Guard('pre-encoder bias (autograd path, encode)', 'autoencoder.py::SparseAutoencoder.encode_pre_scaled',
          '            xs = xs - self.b_dec\n', '            xs = xs\n', STEP),
    Guard('decoder columns renormalised to unit norm after every step', 'autoencoder.py::sae_step_',
          '    if sae.kind.unit_norm and not renorm_first:\n        unit_norm_decoder_(sae)',
          '    if False:\n        unit_norm_decoder_(sae)', STEP),
    Guard('gradient parallel to each decoder column removed before Adam', 'autoencoder.py::sae_step_',
          '        remove_parallel_grad_(sae, unit=True)', '        pass', STEP),
    Guard('anthropic2023: the seed\'s nn.Linear initialisation, encoder and decoder untied (linear_init_)',
          'autoencoder.py::Anthropic2023.init_weights_',
          "        linear_init_(sae)  # the seed's", "        tied_init_(sae, 1.0)  # the seed's",
          f'{T}::test_initialisation_of_a_run[anthropic2023-none-paper]'),
    Guard("weight_init='tied': the tied start for any kind instead of its paper's",
          'autoencoder.py::SparseAutoencoder.reset_parameters',
          "        if self.cfg.weight_init == 'paper':\n", '        if True:\n',
          f'{T}::test_initialisation_of_a_run[anthropic2023-none-tied]'),
    Guard('b_dec initialised at the geometric median of the data', 'autoencoder.py::Kind.init_from_data_',
          '            init_b_dec_(sae, rows)\n', '            pass\n', f'{T}::test_initialisation_of_a_run'),
    Guard('the kind\'s initialisation from the data runs in train_sae.py', 'train_sae.py::build',
          '    init_from_data_(sae, init_rows)', '    pass', f'{T}::test_initialisation_of_a_run'),
    Guard('geometric median by Weiszfeld (not the mean)', 'autoencoder.py::geometric_median',
          '        m = m_new\n', '        m = m\n', f'{T}::test_initialisation_of_a_run'),
    Guard('L1 term λ·Σ_i f_i per row, MSE averaged over d (fused step)', 'autoencoder.py::FusedL1Loss.backward',
          "wda[d] = g_l1 / B if dec_norm is None", "wda[d] = g_l1 / B / d if dec_norm is None", STEP),
    Guard('L1 term (autograd path)', 'autoencoder.py::L1Kind.loss_terms',
          '            l1 = f.float().sum() / B', '            l1 = f.float().sum() / err.numel()',
          f'{R}::test_autograd_loss_equals_the_reference'),
    Guard('resampling: dead = not fired over the window', 'autoencoder.py::silent_latents',
          '    return sae.tokens_since_fired >= window_tokens', '    return sae.tokens_since_fired > 2 * window_tokens',
          f'{T}::test_resampling_in_the_run'),
    Guard('resampling: the window is half the interval since the last resampling',
          'monosemanticity/sweep.py::resample_windows', '(s - prev) // 2 * rows_per_step', '(s - prev) * rows_per_step',
          f'{T}::test_resampling_in_the_run'),
    Guard('resampling: rows drawn with probability ∝ loss²', 'autoencoder.py::resample_dead_',
          'p = per_row_loss(sae, rows, chunk).double().pow(2)', 'p = per_row_loss(sae, rows, chunk).double()',
          'tests/test_autoencoder.py::test_resampling_samples_proportional_to_loss_squared'),
    Guard('resampling: decoder column = the drawn row (encoder row along it)', 'autoencoder.py::resample_dead_',
          '    sae.W_dec[:, idx] = x.T.to(sae.W_dec.dtype)', '    sae.W_dec[:, idx] = x.flip(0).T.to(sae.W_dec.dtype)',
          f'{T}::test_resampling_in_the_run'),
    Guard('resampling: the drawn row is normalised to unit norm', 'autoencoder.py::resample_dead_',
          '    x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)\n', '',
          f'{T}::test_resampling_in_the_run'),
    Guard('resampling: encoder row = 0.2 × the mean alive encoder norm', 'autoencoder.py::resample_dead_',
          'sae.W_enc[idx] = (x * (0.2 * enc_norm))', 'sae.W_enc[idx] = (x * (0.3 * enc_norm))',
          f'{T}::test_resampling_in_the_run'),
    Guard('resampling: b_enc of the resampled = 0', 'autoencoder.py::resample_dead_', '    sae.b_enc[idx] = 0\n', '',
          f'{T}::test_resampling_in_the_run'),
    Guard('resampling: Adam state of the resampled reset', 'autoencoder.py::resample_dead_',
          "                opt.state[p_][key][sl] = 0", "                pass", f'{T}::test_resampling_in_the_run'),
    Guard('resampling happens at resample_steps in the run', 'train_sae.py::resample',
          "        resample_dead_(sae, opt, dead, rows_sample(resample_rows, salt=step), generator=resample_gen)",
          "        pass", f'{T}::test_resampling_in_the_run'),
    Guard('resampling: anthropic2023 resamples', 'autoencoder.py::Anthropic2023',
          "    resamples = True\n", "    resamples = False\n", f'{T}::test_resampling_in_the_run'),
    # ---------------------------------------------------------------- april2024
    Guard('april2024: inputs scaled so E‖x‖ = √d', 'autoencoder.py::April2024.init_from_data_',
          '            sae.scale.fill_(estimate_scale(rows))', '            pass',
          f'{T}::test_initialisation_of_a_run'),
    Guard('april2024: no pre-encoder bias', 'autoencoder.py::April2024',
          "    pre_bias = False  # x enters the encoder", "    pre_bias = True  # x enters the encoder", STEP),
    Guard('april2024: no unit-norm constraint', 'autoencoder.py::April2024',
          "    unit_norm = False  # the L1 term", "    unit_norm = True  # the L1 term", STEP),
    Guard('april2024: L1 weighted by decoder norms (fused forward)', 'autoencoder.py::FusedL1Loss.backward',
          'wda[d] = g_l1 / B if dec_norm is None else dec_norm * (g_l1 / B)',
          'wda[d] = g_l1 / B if dec_norm is None else (g_l1 / B)', STEP),
    Guard('april2024: L1 weighted by decoder norms (its W_dec gradient)', 'autoencoder.py::FusedL1Loss.backward',
          'gW_dec.addcmul_(W_dec, fsum * (g_l1 / B) / dec_norm.clamp_min(1e-12))', 'pass', STEP),
    Guard('april2024: L1 weighted by decoder norms (autograd path)', 'autoencoder.py::L1Kind.loss_terms',
          'l1 = (f.float().sum(0) * col_norms(sae.W_dec)).sum() / B', 'l1 = f.float().sum() / B',
          f'{R}::test_autograd_loss_equals_the_reference'),
    Guard('april2024: reconstruction summed over d', 'autoencoder.py::FusedL1Loss.forward',
          'c = 2.0 / B if kind.recon_sum_over_d else 2.0 / (B * d)', 'c = 2.0 / (B * d)', STEP),
    Guard('april2024: decoder init norm 0.1, W_enc = W_decᵀ', 'autoencoder.py::tied_init_',
          '    sae.W_dec.mul_(norm / sae.W_dec.norm(dim=0, keepdim=True))\n    sae.W_enc.copy_(sae.W_dec.T)\n',
          '    sae.W_dec.mul_(norm / sae.W_dec.norm(dim=0, keepdim=True))\n    sae.W_enc.copy_(sae.W_dec.T * 0.5)\n',
          f'{T}::test_initialisation_of_a_run[april2024-none-paper]'),
    Guard('april2024: λ warm-up over the first 5%', 'autoencoder.py::l1_coeff_at',
          'return l1_coeff * min(1.0, step / warm) if warm > 0', 'return l1_coeff * 1.0 if warm > 0', STEP),
    Guard('april2024: lr decay to 0 over the last 20%', 'autoencoder.py::lr_at',
          'return lr * max(0.0, (total_steps - step) / (total_steps - decay_start))', 'return lr', STEP),
    Guard('april2024: gradient norm clipped', 'autoencoder.py::sae_step_',
          '    if grad_clip > 0 and not sae.kind.clip_first:\n        torch.nn.utils.clip_grad_norm_(',
          '    if False:\n        torch.nn.utils.clip_grad_norm_(', STEP),
    Guard('april2024: published values (λ 5, 5% warm-up, 20% decay, clip 1, lr 5e-5)', 'autoencoder.py::April2024',
          "recipe = dict(lr=5e-5, l1_coeff=5.0, warmup_frac=0.0, decay_frac=0.2,",
          "recipe = dict(lr=5e-5, l1_coeff=5.0, warmup_frac=0.0, decay_frac=0.1,",
          f'{R}::test_recipes_hold_the_published_values'),
    Guard('april2024: kind defaults reach the run (train_sae.py)', 'train_sae.py::_config_defaults',
          "    return f\"kind={g['kind']!r} default\", dict(RECIPES.get(g['kind'], RECIPES['anthropic2023']))",
          "    return f\"kind={g['kind']!r} default\", dict(RECIPES['anthropic2023'])",
          f'{T}::test_each_kind_brings_its_published_recipe'),
    Guard('the recipe (schedules, clipping) is what the run steps with (train_sae.py)',
          'monosemanticity/sweep.py::make_recipe',
          "{key: c[key] for key in RECIPES[c['kind']]}",
          "{key: c[key] for key in RECIPES[c['kind']] if key != 'grad_clip'}",
          f'{T}::test_each_kind_brings_its_published_recipe'),
    # ---------------------------------------------------------------- topk (Gao et al. 2024)
    Guard('topk: TopK then ReLU', 'autoencoder.py::topk_relu',
          '    return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())',
          '    return torch.zeros_like(pre).scatter_(-1, idx, vals)', f'{R}::test_topk_is_relu_of_the_k_largest'),
    Guard('topk: main loss = MSE / the data variance (mse_scale in the loss)', 'autoencoder.py::recon_term',
          "return mse * sae.mse_scale if topk_loss(sae.cfg) == 'openai' else mse", 'return mse', STEP),
    Guard('topk: mse_scale measured from the data', 'autoencoder.py::TopK.init_from_data_',
          '        init_mse_scale_(sae, rows)', '        pass', f'{T}::test_initialisation_of_a_run'),
    Guard('topk AuxK: normalised by the residual\'s variance', 'autoencoder.py::auxk_term',
          "    return ((e_hat.float() + b - e).pow(2).mean() / var).nan_to_num(0.0)",
          "    return ((e_hat.float() + b - e).pow(2).mean()).nan_to_num(0.0)",
          f'{R}::test_auxk_term_by_hand'),
    Guard('topk AuxK: ReLU on the dead latents\' values', 'autoencoder.py::TopK.loss_terms',
          'torch.zeros_like(pre).scatter_(-1, idx, vals.relu()) @ sae.W_dec.T',
          'torch.zeros_like(pre).scatter_(-1, idx, vals) @ sae.W_dec.T', f'{R}::test_auxk_term_by_hand'),
    Guard('topk AuxK (openai): the residual e = x - x̂ detached', 'autoencoder.py::auxk_term',
          '    e = -err.detach()\n', '    e = -err\n', f'{STEP}[topk]'),
    Guard('topk AuxK (openai): ê decoded with b_dec, which AuxK trains', 'autoencoder.py::auxk_term',
          '    b = (sae.b_dec - sae.b_dec.detach()).float()', '    b = torch.zeros_like(sae.b_dec)', f'{STEP}[topk]'),
    Guard('topk AuxK (openai), no dead latent: mean((b_dec - e)²) = mean((b_dec - ē)²) + var(e)',
          'autoencoder.py::auxk_term', '(b - e_mean).pow(2).mean() + var', '(b - e_mean).pow(2).mean()',
          f'{R}::test_auxk_term_by_hand'),
    Guard('topk AuxK (openai): the term stays (ê = b_dec) when no latent is dead', 'autoencoder.py::auxk_term',
          '    e = -err.detach()\n', '    if e_hat is None:\n        return err.new_zeros(())\n    e = -err.detach()\n',
          f'{STEP}[topk-no_dead]'),
    Guard('topk AuxK: coefficient 1/32', 'autoencoder.py::SAEConfig',
          'aux_coeff: float = 1 / 32', 'aux_coeff: float = 1 / 16', f'{R}::test_auxk_term_by_hand'),
    Guard('topk AuxK: only the dead latents, counting this batch', 'autoencoder.py::TopK.auxk_dead',
          'return (sae.tokens_since_fired + n_tokens >= window) & ~fired',
          'return sae.tokens_since_fired >= window', STEP),
    Guard('topk: openai\'s init, the encoder scaled so random unit inputs reconstruct with norm 1',
          'autoencoder.py::TopK.init_weights_',
          '        sae.W_enc /= torch.linalg.vector_norm(recon, dim=1).mean()\n', '        pass\n',
          f'{T}::test_initialisation_of_a_run[topk-none-paper]'),
    Guard('topk family: the decoder renormalised after backward, before the step (openai, the BatchTopK code)',
          'autoencoder.py::sae_step_',
          '    renorm_first = sae.kind.unit_norm and sae.kind.renorm_before_step\n', '    renorm_first = False\n',
          STEP),
    Guard('topk: Adam eps 6.25e-10 (openai)', 'autoencoder.py::TopK',
          "grad_clip=0.0, adam_betas=(0.9, 0.999), adam_eps=6.25e-10)",
          "grad_clip=0.0, adam_betas=(0.9, 0.999), adam_eps=1e-8)", f'{R}::test_recipes_hold_the_published_values'),
    Guard('layer_norm option: per-token normalisation with unbiased std',
          'autoencoder.py::SparseAutoencoder.preprocess',
          '            std = xc.std(-1, keepdim=True)', '            std = xc.std(-1, keepdim=True, correction=0)',
          f'{R}::test_layer_norm_round_trip_and_scale_free'),
    Guard('layer_norm option in the fused step', 'autoencoder.py::FusedL1Loss.forward',
          "x, stats = sae.preprocess(x) if sae.cfg.normalize == 'layer_norm' else (x.to(W_enc.dtype), None)",
          "x, stats = x.to(W_enc.dtype), None", STEP),
    # ---------------------------------------------------------------- batchtopk (Bussmann, Leask, Nanda 2024)
    Guard('batchtopk: the k·B largest activations over the whole batch', 'autoencoder.py::batch_topk_relu',
          'vals, idx = flat.topk(k * pre.shape[0], sorted=False)',
          'vals, idx = flat.view(pre.shape[0], -1).topk(k, sorted=False)\n    idx = idx + torch.arange(pre.shape[0])'
          '[:, None] * pre.shape[1]\n    vals, idx = vals.flatten(), idx.flatten()',
          f'{K}::test_batchtopk_keeps_the_k_times_B_largest_over_the_batch'),
    Guard('batchtopk: ReLU before the batch top-k', 'autoencoder.py::batch_topk_relu',
          '    flat = pre.relu().flatten()  # (B·F,)', '    flat = pre.flatten()  # (B·F,)',
          f'{K}::test_batchtopk_keeps_the_k_times_B_largest_over_the_batch'),
    Guard('batchtopk: inference keeps what exceeds the learned threshold', 'autoencoder.py::BatchTopK.activate',
          '        if sae.training:\n            return batch_topk_relu',
          '        if True:\n            return batch_topk_relu',
          f'{K}::test_batchtopk_inference_uses_the_threshold'),
    Guard('batchtopk: θ estimated from the smallest kept activation', 'autoencoder.py::BatchTopK.after_step_',
          '        smallest = positive.min().to(torch.float64)', '        smallest = positive.mean().to(torch.float64)',
          f'{K}::test_batchtopk_threshold_is_the_running_mean_of_the_smallest_kept_activation'),
    Guard('batchtopk: θ a running mean (rate 0.01)', 'autoencoder.py::BatchTopK.after_step_',
          '        sae.threshold.mul_(1 - lr).add_(lr * smallest)', '        sae.threshold.fill_(smallest)',
          f'{K}::test_batchtopk_threshold_is_the_running_mean_of_the_smallest_kept_activation'),
    Guard('batchtopk: θ updated after every training step', 'autoencoder.py::sae_step_',
          '    sae.kind.after_step_(sae, f.detach())', '    pass',
          f'{K}::test_batchtopk_threshold_is_the_running_mean_of_the_smallest_kept_activation'),
    Guard('batchtopk: θ exported as SAELens jumprelu thresholds', 'autoencoder.py::BatchTopK.export_tensors',
          "return {'threshold': sae.threshold.float().expand(sae.cfg.n_features).clone()}",
          "return {'threshold': torch.zeros(sae.cfg.n_features)}",
          f'{K}::test_saelens_export_is_jumprelu_and_loads_back'),
    Guard('batchtopk: the authors\' Adam (lr 3e-4, betas (0.9, 0.99))', 'autoencoder.py::BatchTopK',
          'grad_clip=0.0, adam_betas=(0.9, 0.99), adam_eps=1e-8)',
          'grad_clip=0.0, adam_betas=(0.9, 0.999), adam_eps=1e-8)',
          f'{K}::test_batchtopk_recipe_and_auxk'),
    Guard('batchtopk: the authors\' loss by default (topk_loss \'bussmann\')', 'autoencoder.py::BatchTopK',
          "    loss_form = 'bussmann'  # the authors'", "    loss_form = 'openai'  # the authors'", STEP),
    Guard('topk_loss: a TopK-family SAE takes the loss form given instead of its kind\'s', 'autoencoder.py::topk_loss',
          'return cfg.topk_loss or KINDS[cfg.kind].loss_form', 'return KINDS[cfg.kind].loss_form',
          f'{STEP}[batchtopk-openai]'),
    Guard('batchtopk (bussmann): main loss the plain MSE (no mse_scale)', 'autoencoder.py::recon_term',
          "return mse * sae.mse_scale if topk_loss(sae.cfg) == 'openai' else mse", 'return mse * sae.mse_scale',
          f'{STEP}[batchtopk]'),
    Guard('batchtopk AuxK (bussmann): mean((ê - e)²) on the residual not detached', 'autoencoder.py::auxk_term',
          '        return (e_hat.float() + err).pow(2).mean()',
          '        return (e_hat.float() + err.detach()).pow(2).mean()',
          f'{STEP}[batchtopk]'),
    Guard('batchtopk AuxK (bussmann): k_aux 512 dead latents per row', 'autoencoder.py::k_aux',
          "topk_loss(cfg) == 'openai' else 512)", "topk_loss(cfg) == 'openai' else cfg.d_in // 2)",
          f'{K}::test_bussmann_auxk_dead_after_the_authors_batches_with_k_aux_512'),
    Guard('batchtopk AuxK (bussmann): dead after auxk_dead_batches silent batches (not tokens)',
          'autoencoder.py::TopK.auxk_dead',
          "else auxk_dead_batches(sae.cfg) * n_tokens", 'else sae.cfg.auxk_dead_tokens', f'{STEP}[batchtopk]'),
    Guard('batchtopk AuxK: dead after 5 silent batches, matryoshka after 20 (the authors\' configs)',
          'autoencoder.py::auxk_dead_batches',
          "or (20 if cfg.kind == 'matryoshka_batchtopk' else 5)",
          "or (5 if cfg.kind == 'matryoshka_batchtopk' else 20)",
          f'{K}::test_bussmann_auxk_dead_after_the_authors_batches_with_k_aux_512'),
    Guard('batchtopk: gradient clipped before the decoder renormalisation (the authors\' training.py)',
          'autoencoder.py::BatchTopK', "    clip_first = True  # the authors' training.py",
          "    clip_first = False  # the authors' training.py",
          f'{R}::test_batchtopk_clips_before_the_decoder_renormalisation'),
    Guard('batchtopk: the authors\' init, kaiming_uniform_ bound √(6/F), W_dec = W_encᵀ',
          'autoencoder.py::BatchTopK.init_weights_',
          '        nn.init.kaiming_uniform_(sae.W_dec)  # (d, F)',
          '        nn.init.kaiming_uniform_(sae.W_dec, a=math.sqrt(5))  # (d, F)',
          f'{T}::test_initialisation_of_a_run[batchtopk-none-paper]'),
    Guard('batchtopk, jumprelu: b_dec starts at 0 (b_dec_init \'zero\', not the median)',
          'autoencoder.py::Kind.init_from_data_',
          "        if self.pre_bias and self.b_dec_init == 'median':\n", '        if self.pre_bias:\n',
          f'{T}::test_initialisation_of_a_run[batchtopk-none-paper]'),
    # ---------------------------------------------------------------- matryoshka_batchtopk (Bussmann et al. 2025)
    Guard('matryoshka: every prefix\'s reconstruction loss is added', 'autoencoder.py::matryoshka_recon',
          '            recon = recon + recon_term(sae, e)', '            recon = recon',
          f'{K}::test_matryoshka_loss_over_the_nested_prefixes[bussmann]'),
    Guard('matryoshka (topk_loss \'openai\'): prefix losses summed (not averaged), each × mse_scale',
          'autoencoder.py::matryoshka_recon',
          "return recon / (len(groups) + 1) if topk_loss(sae.cfg) == 'bussmann' else recon",
          'return recon / (len(groups) + 1)',
          f'{K}::test_matryoshka_loss_over_the_nested_prefixes[openai]'),
    Guard('matryoshka (bussmann, the authors\'): the mean of the prefix losses, not their sum',
          'autoencoder.py::matryoshka_recon',
          "return recon / (len(groups) + 1) if topk_loss(sae.cfg) == 'bussmann' else recon", 'return recon',
          f'{K}::test_matryoshka_loss_over_the_nested_prefixes[bussmann]'),
    Guard('matryoshka (bussmann): the b_dec-only reconstruction (prefix 0) is one of the terms',
          'autoencoder.py::matryoshka_recon',
          "        if lo > 0 or topk_loss(sae.cfg) == 'bussmann':", '        if lo > 0:',
          f'{K}::test_matryoshka_loss_over_the_nested_prefixes[bussmann]'),
    Guard('matryoshka: prefix m reconstructs from latents [0, m) only',
          'autoencoder.py::MatryoshkaBatchTopK.loss_terms',
          'parts = [f[:, lo:hi] @ sae.W_dec[:, lo:hi].T for lo, hi in matryoshka_groups(sae.cfg)]',
          'parts = [f[:, hi:] @ sae.W_dec[:, hi:].T for lo, hi in matryoshka_groups(sae.cfg)]',
          f'{K}::test_matryoshka_loss_over_the_nested_prefixes[bussmann]'),
    Guard('matryoshka, sparse step: each group decodes the kept entries in its own columns [lo, hi)',
          'autoencoder.py::MatryoshkaBatchTopK.sparse_recon',
          'bag = code.rows * G + torch.bucketize(code.cols, bounds, right=True)',
          'bag = code.rows * G + torch.bucketize(code.cols, bounds)',
          'tests/test_sparse_step.py::test_matryoshka_prefix_losses_from_the_kept_codes[bussmann]'),
    Guard('matryoshka, sparse step: x̂ is the sum of the groups\' parts and b_dec',
          'autoencoder.py::MatryoshkaBatchTopK.sparse_recon',
          'err = (parts.sum(1) + sae.b_dec).float() - xs', 'err = (parts[:, 1:].sum(1) + sae.b_dec).float() - xs',
          'tests/test_sparse_step.py::test_matryoshka_prefix_losses_from_the_kept_codes[bussmann]'),
    Guard('matryoshka AuxK: 0 when no dead latent has a positive pre-activation (ê = 0)', 'autoencoder.py::auxk_term',
          'if e_hat is None or (sae.kind.auxk_needs_positive and not bool(e_hat.any())):', 'if e_hat is None:',
          f'{R}::test_matryoshka_auxk_is_0_when_no_dead_latent_is_positive'),
    Guard('matryoshka: default prefixes F/16, F/8, F/4, F/2, F', 'autoencoder.py::matryoshka_widths',
          'tuple(cfg.n_features >> i for i in (4, 3, 2, 1, 0))', 'tuple(cfg.n_features >> i for i in (3, 2, 1, 0))',
          f'{K}::test_matryoshka_prefixes_are_nested'),
    # ---------------------------------------------------------------- jumprelu (Rajamanoharan et al. 2024)
    Guard('jumprelu: f = pre above θ, 0 below', 'autoencoder.py::JumpReLUFunction.forward',
          '        return pre * (pre > theta).to(pre.dtype)', '        return pre * (pre > 0).to(pre.dtype)',
          f'{K}::test_jumprelu_is_pre_above_theta_and_zero_below'),
    Guard('jumprelu: pre-encoder bias in training, x - b_dec enters the encoder (Gemma Scope)',
          'autoencoder.py::JumpReLU',
          "    fold_pre_bias = True  # Gemma Scope's released SAEs have the pre-encoder bias folded into b_enc\n",
          "    fold_pre_bias = True  # Gemma Scope's released SAEs have the pre-encoder bias folded into b_enc\n"
          "    pre_bias = False\n", f'{STEP}[jumprelu]'),
    Guard('jumprelu STE: ∂f/∂θ = -(θ/ε)·K((pre - θ)/ε)', 'autoencoder.py::JumpReLUFunction.backward',
          'g_theta = (-(theta / ctx.eps) * rectangle(', 'g_theta = (-(1.0 / ctx.eps) * rectangle(',
          f'{K}::test_jumprelu_straight_through_gradients_by_hand'),
    Guard('jumprelu STE: ∂H/∂θ = -(1/ε)·K((pre - θ)/ε) (the L0 term trains θ)', 'autoencoder.py::StepFunction.backward',
          'g_theta = (-(1.0 / ctx.eps) * rectangle(', 'g_theta = (-(0.0 / ctx.eps) * rectangle(',
          f'{K}::test_jumprelu_straight_through_gradients_by_hand'),
    Guard('jumprelu STE: rectangle kernel 1{|u| < 1/2}', 'autoencoder.py::rectangle',
          '    return ((u > -0.5) & (u < 0.5)).to(u.dtype)', '    return ((u > -1.0) & (u < 1.0)).to(u.dtype)',
          f'{K}::test_jumprelu_straight_through_gradients_by_hand'),
    Guard('jumprelu: ∂f/∂pre = H(pre - θ)', 'autoencoder.py::JumpReLUFunction.backward',
          '        return (pre > theta).to(g.dtype) * g, g_theta.to(theta.dtype), None',
          '        return (pre > 0).to(g.dtype) * g, g_theta.to(theta.dtype), None',
          f'{K}::test_jumprelu_straight_through_gradients_by_hand'),
    Guard('jumprelu: no gradient from the L0 term to pre', 'autoencoder.py::StepFunction.backward',
          '        return None, g_theta.to(theta.dtype), None',
          '        return -rectangle((pre - theta) / ctx.eps) / ctx.eps * g, g_theta.to(theta.dtype), None',
          f'{K}::test_jumprelu_straight_through_gradients_by_hand'),
    Guard('jumprelu: L0 penalty λ·mean_b Σ_i H(pre - θ)', 'autoencoder.py::JumpReLU.loss_terms',
          'sae.cfg.jumprelu_bandwidth).float().sum(1).mean()', 'sae.cfg.jumprelu_bandwidth).float().mean()',
          f'{K}::test_jumprelu_straight_through_gradients_by_hand'),
    Guard('jumprelu: reconstruction ‖x̂ - x‖² summed over d', 'autoencoder.py::JumpReLU.loss_terms',
          '        recon = err.pow(2).sum(1).mean()\n        l0', '        recon = err.pow(2).mean()\n        l0',
          f'{K}::test_jumprelu_straight_through_gradients_by_hand'),
    Guard('jumprelu: bandwidth ε = 0.001', 'autoencoder.py::JumpReLU.Params',
          'jumprelu_bandwidth: float = 0.001', 'jumprelu_bandwidth: float = 0.002',
          f'{K}::test_jumprelu_init_and_recipe'),
    Guard('jumprelu: θ = 0.001 at init', 'autoencoder.py::JumpReLU.Params',
          'jumprelu_init_threshold: float = 0.001', 'jumprelu_init_threshold: float = 0.01',
          f'{K}::test_jumprelu_init_and_recipe'),
    Guard('jumprelu: inputs scaled to E‖x‖² = 1', 'autoencoder.py::JumpReLU.init_from_data_',
          '            sae.scale.fill_(estimate_rms_scale(rows))  # E‖scale·x‖² = 1', '            pass',
          f'{K}::test_jumprelu_init_and_recipe'),
    Guard('jumprelu: the paper\'s Adam (β1 = 0)', 'autoencoder.py::JumpReLU',
          'grad_clip=0.0, adam_betas=(0.0, 0.999), adam_eps=1e-8)',
          'grad_clip=0.0, adam_betas=(0.9, 0.999), adam_eps=1e-8)',
          f'{K}::test_jumprelu_init_and_recipe'),
    Guard('jumprelu: Gemma Scope\'s warm-ups (lr along a cosine from 0.1·lr over 1,000 steps, λ over 10,000)',
          'autoencoder.py::JumpReLU', "warmup_shape='cosine', warmup_start=0.1,",
          "warmup_shape='linear', warmup_start=0.1,", f'{R}::test_recipes_hold_the_published_values'),
    Guard('lr warm-up over warmup_steps steps when given (jumprelu)', 'autoencoder.py::lr_at',
          'warm, decay_start = warmup_steps or warmup_frac * total_steps,',
          'warm, decay_start = warmup_frac * total_steps,', f'{STEP}[jumprelu]'),
    Guard('lr warm-up shape \'cosine\' from warmup_start·lr (jumprelu)', 'autoencoder.py::lr_at',
          "        if warmup_shape == 'cosine':\n", '        if False:\n', f'{STEP}[jumprelu]'),
    Guard('λ warm-up over l1_warmup_steps steps when given (jumprelu)', 'autoencoder.py::l1_coeff_at',
          '    warm = warmup_steps or warmup_frac * total_steps\n', '    warm = warmup_frac * total_steps\n',
          f'{STEP}[jumprelu]'),
    Guard('a recipe given a warm-up both in steps and as a fraction is refused', 'autoencoder.py::Recipe.__post_init__',
          '            if getattr(self, steps) > 0 and getattr(self, frac) > 0:', '            if False:',
          f'{T}::test_each_kind_brings_its_published_recipe'),
    Guard('train_sae.py: every key of the kind\'s recipe reaches the run (jumprelu\'s warm-ups in steps)',
          'monosemanticity/sweep.py::make_recipe', "{key: c[key] for key in RECIPES[c['kind']]}",
          "{key: c[key] for key in ('lr', 'l1_coeff', 'warmup_frac', 'decay_frac', 'l1_warmup_frac', 'grad_clip', "
          "'adam_eps')}", f'{T}::test_each_kind_brings_its_published_recipe'),
    Guard('jumprelu: Gemma Scope\'s init, He-uniform decoder columns (tied, unit norm)',
          'autoencoder.py::JumpReLU.init_weights_', 'tied_init_(sae, 1.0, uniform=True)', 'tied_init_(sae, 1.0)',
          f'{T}::test_initialisation_of_a_run[jumprelu-none-paper]'),
    Guard('jumprelu: θ exported as SAELens `threshold`', 'autoencoder.py::JumpReLU.export_tensors',
          "return {'threshold': sae.log_threshold.detach().float().exp()}",
          "return {'threshold': sae.log_threshold.detach().float()}",
          f'{K}::test_saelens_export_is_jumprelu_and_loads_back'),
    Guard('jumprelu export: the pre-encoder bias folded into b_enc (b_enc - W_enc b_dec)',
          'autoencoder.py::state_for_export', '        b_enc -= sae.W_enc.float() @ sae.b_dec.float()', '        pass',
          f'{K}::test_saelens_export_is_jumprelu_and_loads_back[jumprelu]'),
    Guard('jumprelu export: apply_b_dec_to_input false (the pre-encoder bias is folded)', 'autoencoder.py::saelens_cfg',
          "'apply_b_dec_to_input': kind.pre_bias and not kind.fold_pre_bias,", "'apply_b_dec_to_input': kind.pre_bias,",
          f'{K}::test_saelens_export_is_jumprelu_and_loads_back[jumprelu]'),
    Guard('SAELens load: a b_dec applied unlike the kind is folded into b_enc', 'autoencoder.py::load_saelens',
          "            sae.b_enc.add_(sd['b_dec'] @ sd['W_enc'], alpha=-1.0 if applied else 1.0)", '            pass',
          f'{K}::test_saelens_export_is_jumprelu_and_loads_back'),
    # ---------------------------------------------------------------- bad data never trains silently
    Guard('train_sae.py stops at a non-finite loss / batch', 'train_sae.py::stop_if_not_finite',
          "    if not torch.isfinite(stats['loss']):", "    if False:", f'{T}::test_non_finite_rows_stop_the_run'),
    Guard('train_sae.py refuses non-finite rows at init', 'train_sae.py::shared_init_rows',
          '    if not torch.isfinite(init_rows).all():', '    if False:', f'{T}::test_non_finite_rows_stop_the_run'),
    Guard('harvest refuses rows that overflow float16 (and NaN/inf)', 'monosemanticity/store.py::plan_rows',
          'if not torch.linalg.vector_norm(kept, dim=1).max() <= limit and not (kept.abs() <= limit).all():',
          'if False:', 'tests/test_activations.py::test_float16_overflow_is_refused_then_float32_succeeds'),
    Guard('harvest: NaN from the transformer is refused', 'monosemanticity/store.py::plan_rows',
          'if not torch.linalg.vector_norm(kept, dim=1).max() <= limit and not (kept.abs() <= limit).all():',
          'if False:', 'tests/test_activations.py::test_nan_in_the_transformer_is_refused'),
    Guard('harvest: the check is exact (norm bound, then per value)', 'monosemanticity/store.py::plan_rows',
          'and not (kept.abs() <= limit).all():', 'and not (kept.abs() < limit).all():',
          'tests/test_activations.py::test_fill_rows_keeps_every_finite_row_and_refuses_the_rest'),
    Guard('harvest: NaN and overflow get their own messages', 'monosemanticity/store.py::nonfinite_rows',
          'if torch.isfinite(kept).all():', 'if True:',
          'tests/test_activations.py::test_nan_in_the_transformer_is_refused'),
    Guard('train_transformer.py stops at a non-finite loss before the update', 'train_transformer.py',
          'if not all(map(math.isfinite, micro_loss)):', 'if False:',
          'tests/test_train_transformer.py::test_nan_loss_stops_without_saving[step]'),
    Guard('train_transformer.py stops at a non-finite evaluation before saving', 'train_transformer.py',
          'if not math.isfinite(losses[split]):', 'if False:',
          'tests/test_train_transformer.py::test_nan_loss_stops_without_saving[eval]'),
    Guard('build_interface.py refuses non-finite SAE weights', 'monosemanticity/runs.py::load_sae',
          'refuse_nonfinite(sae_params, weights_path,', '(sae_params, weights_path,',
          'tests/test_interface.py::test_nonfinite_weights_are_refused_and_no_site_written[sae]'),
    Guard('build_interface.py refuses non-finite transformer weights', 'monosemanticity/runs.py::load_transformer',
          "refuse_nonfinite(checkpoint.get('model', {}), ckpt_path,", "(checkpoint.get('model', {}), ckpt_path,",
          'tests/test_interface.py::test_nonfinite_weights_are_refused_and_no_site_written[transformer]'),
    Guard('build_interface.py refuses a layer_norm SAE (its panels assume x̂ linear in f)',
          'monosemanticity/runs.py::load_inputs',
          "if sae.cfg.normalize != 'none':", 'if False:',
          'tests/test_interface.py::test_layer_norm_sae_is_refused_in_one_line'),
    # ---------------------------------------------------------------- metric definitions (train_sae.py's metrics.json)
    Guard('FVU = Σ‖x − x̂‖² / Σ‖x − mean‖²',
          'monosemanticity/metrics.py::batch_stats', "'m2': (x - mean).pow(2).sum(),", "'m2': x.pow(2).sum(),",
          f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('FVU: batches merged exactly (Chan)', 'monosemanticity/metrics.py::MetricsAccumulator.add',
          "self.m2 += float(s['m2']) + float(delta.pow(2).sum()) * self.n * nb / tot", "self.m2 += float(s['m2'])",
          f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('MSE per element',
          'monosemanticity/metrics.py::MetricsAccumulator.compute',
          "return {'mse': self.sse / (n * d),", "return {'mse': self.sse / n,",
          f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('L0 = mean count of non-zero features per token', 'monosemanticity/metrics.py::batch_stats',
          'fire = (f != 0).sum(0)  # (F,) int64', 'fire = (f >= 0).sum(0)  # (F,) int64',
          f'{M}::test_density_l0_and_the_crafted_counts'),
    Guard('L1 = mean Σ_i |f_i| per token',
          'monosemanticity/metrics.py::MetricsAccumulator.compute', "'l1': self.l1 / n,",
          "'l1': self.l1 / (n * self.fire.numel()),", f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('density = fraction of tokens a feature fires on', 'monosemanticity/metrics.py::MetricsAccumulator.compute',
          'density = self.fire.double() / n', 'density = self.fire.double() / (n + 1)',
          f'{M}::test_density_l0_and_the_crafted_counts'),
    Guard('dead = never fired in the evaluation window',
          'monosemanticity/metrics.py::MetricsAccumulator.compute', 'dead = self.fire == 0',
          'dead = density < 1e-6', f'{M}::test_dead_and_ultralow'),
    Guard('ultralow = alive with density < 1e-5',
          'monosemanticity/metrics.py::MetricsAccumulator.compute', 'ultralow = ~dead & (density < 1e-5)',
          'ultralow = ~dead & (density < 1e-4)', f'{M}::test_dead_and_ultralow'),
    Guard('ultralow excludes the dead',
          'monosemanticity/metrics.py::MetricsAccumulator.compute', 'ultralow = ~dead & (density < 1e-5)',
          'ultralow = density < 1e-5', f'{M}::test_dead_and_ultralow'),
    Guard('loss recovered = (CE_zero − CE_spliced) / (CE_zero − CE_clean)',
          'monosemanticity/metrics.py::splice_metrics',
          "loss_recovered=ratio(ce['zero'] - ce['spliced'], ce['zero'] - ce['clean']),",
          "loss_recovered=ratio(ce['mean'] - ce['spliced'], ce['mean'] - ce['clean']),",
          f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('loss recovered, mean ablation', 'monosemanticity/metrics.py::splice_metrics',
          "loss_recovered_mean_abl=ratio(ce['mean'] - ce['spliced'], ce['mean'] - ce['clean']),",
          "loss_recovered_mean_abl=ratio(ce['zero'] - ce['spliced'], ce['zero'] - ce['clean']),",
          f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('KL(clean ‖ spliced) per token',
          'monosemanticity/metrics.py::evaluate_saes', 'kl[j] -= torch.dot(p.view(-1), logp_s.sub_(logp).view(-1))',
          'kl[j] += torch.dot(logp_s.exp().view(-1), logp_s.sub_(logp).view(-1))',
          f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('CE spliced: -log p_s of the next token', 'monosemanticity/metrics.py::evaluate_saes',
          'ce_spliced[j] -= logp_s.gather(-1, y.unsqueeze(-1)).sum().item()',
          'ce_spliced[j] -= logp_s.gather(-1, y.roll(1, -1).unsqueeze(-1)).sum().item()',
          f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('CE spliced: the site replaced by the reconstruction', 'monosemanticity/metrics.py::splice.reconstruct',
          'return x_hat.view_as(h).to(h.dtype)', 'return h', f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('CE zero ablation', 'monosemanticity/metrics.py::evaluate_saes', 'replace={site: torch.zeros_like}',
          'replace={site: lambda h: data_mean.to(h.dtype).expand_as(h)}',
          f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('evaluation: zero/mean-ablation CEs computed once per cache (same numbers)',
          'monosemanticity/metrics.py::evaluate_saes',
          '        if i not in ablation_ce:\n', '        if True:\n',
          f'{M}::test_ablation_ces_computed_once_per_cache'),
    Guard('CE mean ablation: the dataset mean', 'monosemanticity/metrics.py::evaluate_saes',
          'replace={site: lambda h: data_mean.to(h.dtype).expand_as(h)}',
          'replace={site: lambda h: h.mean((0, 1), keepdim=True).expand_as(h)}',
          f'{M}::test_reconstruction_and_splice_metrics'),
    Guard('evaluation of many SAEs: one clean forward per batch for all of them',
          'monosemanticity/metrics.py::evaluate_saes',
          "        logits, loss, _ = gpt.run(x, y, reduction='none')  # the clean pass, once for every SAE\n",
          "        logits, loss, _ = [gpt.run(x, y, reduction='none') for _ in saes][0]\n",
          f'{M}::test_saes_evaluated_together_get_their_lone_metrics_bitwise'),
    Guard('evaluation of many SAEs: each gets its own metrics', 'monosemanticity/metrics.py::evaluate_saes',
          'for acc, s, k in zip(accs, ce_spliced, kl)]', 'for acc, s, k in zip(accs, ce_spliced[-1:] * len(saes), kl)]',
          f'{M}::test_saes_evaluated_together_get_their_lone_metrics_bitwise'),
    Guard('train_sae.py: a sweep\'s final evaluation shares its clean passes', 'train_sae.py',
          'evaluate(finishing, final_eval_contexts)',
          '[r for m in finishing for r in evaluate([m], final_eval_contexts)]',
          f'{SE}::test_a_sweep_runs_the_clean_pass_once_per_batch_and_each_sae_gets_its_lone_metrics'),
    Guard('train_sae.py: a sweep\'s periodic evaluations share their clean passes', 'train_sae.py',
          'zip(active, evaluate(active, eval_contexts))',
          'zip(active, [r for m in active for r in evaluate([m], eval_contexts)])',
          f'{SE}::test_a_sweep_runs_the_clean_pass_once_per_batch_and_each_sae_gets_its_lone_metrics'),
    Guard('metrics measured on val contexts spread over val.bin', 'train_sae.py',
          "val = token_memmap(data_dir, 'val', data_meta['dtype'])",
          "val = token_memmap(data_dir, 'train', data_meta['dtype'])", f'{M}::test_eval_window'),
    # ---------------------------------------------------------------- the browser shows tokens as text, never markup
    Guard('browser: el() inserts strings as text nodes', 'interface/common.js',
          "e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);",
          "if (typeof c === 'string' || typeof c === 'number') e.innerHTML += String(c); else e.appendChild(c);", B),
    Guard('browser: token windows (feature page) as text', 'interface/common.js',
          '[IF.visible(texts[j].text, false)]);', '[]); span.innerHTML = IF.visible(texts[j].text, false);', B),
    Guard('browser: example texts as text', 'interface/page_examples.js', '[IF.visible(t, false)]);',
          '[]); s.innerHTML = IF.visible(t, false);', B),
    Guard('browser: neighbour labels as text', 'interface/page_feature.js',
          "el('td', {}, [neighbourLabel(f)])",
          "(() => { const td = el('td'); td.innerHTML = neighbourLabel(f); return td; })()", B),
    Guard('browser: index top-token chips as text', 'interface/page_index.js',
          'r.toks.map((t) => IF.chip(t))',
          "r.toks.map((t) => { const c = el('span', {className: 'chip'}); c.innerHTML = IF.tokenLabel(t); return c; })",
          B),
    Guard('browser: a character split over byte tokens is decoded whole (TextDecoder stream)', 'interface/common.js',
          'decoder.decode(Uint8Array.from(v), {stream: true})', 'decoder.decode(Uint8Array.from(v), {stream: false})',
          'tests/test_browser.py::test_tokens_are_text_never_markup'),
    Guard('interval samples: at most one per context (each context offers its smallest-key token)',
          'monosemanticity/feature_stats.py::IntervalSamples.offer_',
          'one, _ = smallest_per_group(bucket * (c1 - c0) + (ctx - c0), key, 1)',
          'one = torch.arange(len(key), device=key.device)',
          'tests/test_interface.py::test_interval_samples_are_uniform_one_per_context'),
    Guard('interval samples: uniform without replacement (i.i.d. uniform keys)',
          'monosemanticity/feature_stats.py::IntervalSamples.offer_',
          'key = torch.rand(len(act), generator=gen, dtype=torch.float64, device=act.device)',
          'key = torch.rand(len(act), generator=gen, dtype=torch.float64, device=act.device) / (1 + pos)',
          'tests/test_interface.py::test_interval_samples_are_uniform_one_per_context'),
    Guard("local ablation: the ablated residual's own LayerNorm scale",
          'monosemanticity/logit_effects.py::local_ablation_effects',
          'lp_abl = head.logprob_rows_(z_abl, (r_abl.pow(2).mean(1) + 1e-5).rsqrt(),',
          'lp_abl = head.logprob_rows_(z_abl, (r_c[inv].pow(2).mean(1) + 1e-5).rsqrt(),',
          'tests/test_interface.py::test_local_ablation_formula_equals_a_rerun_without_the_feature'),
    Guard('local ablation: LayerNorm removes the mean of the removed direction',
          'monosemanticity/logit_effects.py::feature_logit_directions',
          'centred = U - U.mean(1, keepdim=True)  # LayerNorm removes the mean',
          'centred = U  # LayerNorm removes the mean',
          'tests/test_interface.py::test_local_ablation_formula_equals_a_rerun_without_the_feature'),
    Guard('on-the-fly rows: each row in its shuffled place (plan.dest)',
          'monosemanticity/store.py::_OnTheFlyWindows.load',
          'out[torch.from_numpy(dest).to(s.device)] = rows',
          'out[torch.from_numpy(np.sort(dest)).to(s.device)] = rows',
          'tests/test_activations.py::test_on_the_fly_rows_are_the_models_rows_in_the_plans_order'),
    # ---------------------------------------------------------------- ground-truth concepts (issue 23, labels)
    Guard("concepts: tokenize's character columns converted to UTF-8 bytes",
          'monosemanticity/concepts.py::_Source.char_pos',
          "return self.line_start[i] + len(self.lines[i][:col].encode('utf-8'))", 'return self.line_start[i] + col',
          f'{C}::test_multibyte_text_before_a_labelled_span'),
    Guard('concepts: a token takes the labels of its first non-blank byte',
          'monosemanticity/concepts.py::token_anchors',
          'return np.where(first < spans[:, 1], first, spans[:, 0])', 'return spans[:, 0]',
          f'{C}::test_token_straddling_two_labels_takes_its_first_bytes'),
    Guard('concepts: f-strings are one span (3.11 STRING with an f prefix), not entered by the ast walk',
          'monosemanticity/concepts.py::_walk', 'if not isinstance(node, ast.JoinedStr):', 'if True:',
          f'{C}::test_nested_fstring_is_one_span'),
    Guard('concepts: a docstring is a str constant, first statement of a body',
          'monosemanticity/concepts.py::_mark_structural',
          'isinstance(first.value.value, str)', 'True', f'{C}::test_docstring_vs_plain_string_and_function_body'),
    Guard("concepts: a method (from its decorator's '@') is not class body",
          'monosemanticity/concepts.py::_mark_structural',
          'whole = _decorator_at(src, node.decorator_list[0]) if',
          'whole = src.node_span(node.decorator_list[0])[0] if', f'{C}::test_decorator_class_body_and_method'),
    Guard('concepts: a statement (body, loop, method) includes its indentation',
          'monosemanticity/concepts.py::_Source.stmt_span',
          'return self.line_begin(start), end', 'return start, end',
          f'{C}::test_indentation_belongs_to_its_statement'),
    Guard('concepts: bracket depth counts the bytes strictly inside the brackets',
          'monosemanticity/concepts.py::_mark_lexical',
          "m.mark(f'bracket_depth>={level}', opened, start)", "m.mark(f'bracket_depth>={level}', opened - 1, start)",
          f'{C}::test_lambda_in_comprehension_call_args_subscript_and_depth'),
    Guard('concepts: only the first token of a logical line is line_start',
          'monosemanticity/concepts.py::_mark_lexical',
          "m.mark('line_start', start, start + 1)", "m.mark('line_start', start, end)",
          f'{C}::test_only_the_first_token_of_a_logical_line_and_a_byte_order_mark'),
    Guard('label_concepts.py: rows packed along the concept axis, in column order',
          'monosemanticity/concepts.py::label_split',
          'out[start:end] = np.packbits(labels, axis=1)', 'out[start:end] = np.packbits(labels[:, ::-1], axis=1)',
          f'{C}::test_command_writes_packed_labels_equal_to_the_library'),
    Guard("label_concepts.py: a rerun on other tokens relabels (the split's fingerprint)",
          'monosemanticity/concepts.py::up_to_date', "same = same and entry.get('tokens_sha256') == sha and",
          'same = same and',
          f'{C}::test_command_rerun_skips_and_relabels_other_tokens'),
    # ---------------------------------------------------------------- folder concepts (issue 23, folder corpora)
    Guard('folder concepts: data/text/prepare.py records the paths in the order of the split\'s documents',
          'data/text/prepare.py', "documents = {'train': train_files, 'val': val_files}",
          "documents = {'train': train_files[::-1], 'val': val_files}",
          'tests/test_data.py::test_text_prepare_round_trip_and_meta'),
    Guard("folder concepts: a document's folder is the first part of its path (pkg/sub/b.py is in pkg)",
          'monosemanticity/concepts.py::folder_of', "head, sep, _ = path.partition('/')",
          "head, sep, _ = path.rpartition('/')", f'{C}::test_folder_concepts_of_a_prepared_folder_corpus'),
    Guard("folder concepts: the folder bit is set on the tokens of that document (its index)",
          'monosemanticity/concepts.py::label_split',
          '                if docs.columns[i] >= 0:\n                    labels[:, docs.columns[i]] = True',
          '                if docs.columns[i - 1] >= 0:\n                    labels[:, docs.columns[i - 1]] = True',
          f'{C}::test_folder_concepts_of_a_prepared_folder_corpus'),
    Guard('folder concepts: a document that is not Python keeps its folder\'s label',
          'monosemanticity/concepts.py::label_split',
          "                    skipped.append(dict(document=i, first_token=start, reason=reason))\n",
          "                    skipped.append(dict(document=i, first_token=start, reason=reason))\n"
          "                    continue\n", f'{C}::test_folder_concepts_of_a_prepared_folder_corpus'),
    Guard("folder concepts: the columns are the train documents' folders", 'label_concepts.py',
          "folders = choose_folders(doc_folders['train'], [end - start for start, end in docs['train']])",
          "folders = choose_folders(doc_folders['train'] + doc_folders['val'], "
          "[end - start for start, end in docs['train'] + docs['val']])",
          f'{C}::test_folder_concepts_of_a_prepared_folder_corpus'),
    Guard("folder concepts: concepts.json's row_bytes is the dataset's width (Python concepts + folders)",
          'label_concepts.py::label_dataset', 'row_bytes=row_bytes(len(columns))',
          'row_bytes=row_bytes(len(CONCEPTS))', f'{C}::test_folder_concepts_of_a_prepared_folder_corpus'),
    Guard('folder concepts: the cap keeps the folders of most train tokens',
          'monosemanticity/concepts.py::choose_folders', 'ranked = sorted(totals, key=lambda f: (-totals[f], f))',
          'ranked = sorted(totals)', f'{C}::test_folder_cap_keeps_the_folders_of_most_train_tokens'),
    Guard('folder concepts: a rerun relabels when documents moved to other folders (documents.json\'s fingerprint)',
          'monosemanticity/concepts.py::up_to_date',
          "            and old.get('documents_sha256') == fingerprints['documents']\n", '',
          f'{C}::test_folder_concepts_rerun_skips_and_relabels_moved_files'),
    Guard('folder concepts: a rerun relabels when the columns change',
          'monosemanticity/concepts.py::up_to_date',
          "            and [c['name'] for c in old.get('concepts', [])] == names)", '            )',
          f'{C}::test_folder_concepts_relabel_when_the_columns_change'),
    Guard('folder concepts: paths that are not one per document are one line, exit 2',
          'monosemanticity/concepts.py::document_folders', '    if len(paths) != len(docs):', '    if False:',
          f'{C}::test_no_recorded_paths_no_folders_and_paths_of_other_documents_are_one_line'),
    # ---------------------------------------------------------------- the concept report (issue 23, item 2)
    Guard('concept report: the threshold per (unit, concept) chosen on the EXPLAIN tokens',
          'monosemanticity/concept_report.py::best_detectors',
          "tp_e, fires_e = counts.tp[name, 'explain'], counts.fires[name, 'explain']",
          "tp_e, fires_e = counts.tp[name, 'score'], counts.fires[name, 'score']",
          f'{CR}::test_best_unit_and_scores_against_brute_force'),
    Guard('concept report: precision, recall, F1 scored on the SCORE tokens',
          'monosemanticity/concept_report.py::best_detectors',
          "p, r, f1 = prf(tp_s, fires_s, counts.positives['score'])",
          "p, r, f1 = prf(tp_s, fires_s, counts.positives['explain'])",
          f'{CR}::test_best_unit_and_scores_against_brute_force'),
    Guard('concept report: the threshold grid is fractions of the max over the EXPLAIN tokens',
          'monosemanticity/concept_report.py::ConceptCounts.__init__',
          'fracs[:, None] * m.cpu()', '0.5 * m.cpu() + 0 * fracs[:, None]',
          f'{CR}::test_planted_units_are_found_with_f1_one'),
    Guard("concept report: a token's labels are its own row of concepts_<split>.bin",
          'monosemanticity/concept_report.py::context_labels',
          'starts[:, None] + np.arange(T)', 'starts[:, None] + np.arange(1, T + 1)',
          f'{CR}::test_planted_units_are_found_with_f1_one'),
    Guard('concept report: a token counts in the split of its context',
          'monosemanticity/concept_report.py::ConceptCounts.add_',
          'explain = torch.from_numpy(np.repeat(self.is_explain[context_ids], self.T))',
          'explain = torch.from_numpy(np.tile(self.is_explain[context_ids], self.T))',
          f'{CR}::test_best_unit_and_scores_against_brute_force'),
    Guard('concept report: true positives are firings on tokens with the concept (dense units: the neurons)',
          'monosemanticity/concept_report.py::firing_counts',
          'return torch.stack([(a > t).float().T @ y for t in thr]).double()',
          'return torch.stack([(a > t).float().T @ (1 - y) for t in thr]).double()',
          f'{CA}::test_firing_counts_against_brute_force'),
    Guard('concept report: true positives are firings on tokens with the concept (sparse units: the features)',
          'monosemanticity/concept_report.py::firing_counts',
          'torch.sparse.mm(once, y)', 'torch.sparse.mm(once, 1 - y)',
          f'{CR}::test_best_unit_and_scores_against_brute_force'),
    Guard('concept counts: a sparse firing counts at every threshold it passes (not only its highest)',
          'monosemanticity/concept_report.py::firing_counts',
          'return hist.flip(0).cumsum(0).flip(0).double()', 'return hist.double()',
          f'{CA}::test_firing_counts_against_brute_force'),
    Guard("concept counts: each token's firings count in its own part (EXPLAIN or SCORE) and in its fires",
          'monosemanticity/concept_report.py::ConceptCounts.add_',
          'columns = torch.cat([y * e, y * (1 - e), e, 1 - e], 1)', 'columns = torch.cat([y * e, y * e, e, 1 - e], 1)',
          f'{CR}::test_best_unit_and_scores_against_brute_force'),
    Guard('concept counts: a firing passes a threshold where its activation is strictly above it',
          'monosemanticity/concept_report.py::firing_counts',
          'level = (a[i, u][:, None] > thr[:, u].T).sum(1)', 'level = (a[i, u][:, None] >= thr[:, u].T).sum(1)',
          f'{CA}::test_firing_counts_against_brute_force'),
    Guard("concept axis: the even contexts are the EXPLAIN ones, the odd ones score",
          'monosemanticity/concept_axis.py::concept_axis',
          'is_explain = np.arange(len(starts)) % 2 == 0', 'is_explain = np.arange(len(starts)) % 2 == 1',
          f'{CA}::test_each_sae_best_feature_and_the_best_neuron_against_brute_force'),
    Guard("concept axis: thresholds from each unit's max over the EXPLAIN tokens only",
          'monosemanticity/concept_axis.py::concept_axis',
          'explain_starts = starts[is_explain]', 'explain_starts = starts',
          f'{CA}::test_each_sae_best_feature_and_the_best_neuron_against_brute_force'),
    Guard("concept axis: the SAEs encode as at inference (BatchTopK's threshold, not the batch's top k)",
          'monosemanticity/concept_axis.py::concept_axis', '        sae.eval()  # inference',
          '        sae.train()  # inference',
          f'{CA}::test_each_sae_best_feature_and_the_best_neuron_against_brute_force'),
    Guard("concept axis: each SAE's own features are scored",
          'monosemanticity/concept_axis.py::concept_axis',
          "return {name: sae_concepts(counts, name, neurons) for name in saes}",
          "return {name: sae_concepts(counts, min(saes), neurons) for name in saes}",
          f'{CA}::test_each_sae_best_feature_and_the_best_neuron_against_brute_force'),
    Guard("concept axis: the labels are checked before training (labels of other tokens stop the run at once)",
          'train_sae.py', "load_concept_labels(data_dir, 'val', len(val)) if concept_contexts else None",
          "None", f'{CA}::test_labels_of_other_tokens_are_refused_before_training'),
    Guard("concept axis: a sweep done before the labels gets its axis on resume (nothing retrained)", 'train_sae.py',
          "unscored = [m for m in done if concept_labels is not None", "unscored = [m for m in done if False",
          f'{CA}::test_a_sweep_done_before_the_labels_gets_its_axis_without_training'),
    Guard("concept axis: pareto.json's concept_f1 is the SAE's median best-feature F1",
          'monosemanticity/sweep.py::pareto_record', "'concept_f1': concepts['median_best_f1'] if concepts else None,",
          "'concept_f1': concepts['neurons']['median_best_f1'] if concepts else None,",
          f'{CA}::test_pareto_report_carries_the_concept_axis'),
    Guard("concept axis: pareto.png's third panel",
          'monosemanticity/sweep.py::plot_pareto', "if any(r.get('concept_f1') is not None for r in records):",
          "if False:", f'{CA}::test_pareto_report_carries_the_concept_axis'),
    Guard('concept report: pass 2 hands each batch to the concept counts', 'monosemanticity/findings.py::pass2_firings',
          '            on_batch(b0, b1, units)', '            pass',
          f'{CR}::test_best_unit_and_scores_against_brute_force'),
    Guard('concept report spread: the candidate whose OR most raises the EXPLAIN F1 is added',
          'monosemanticity/concept_report.py::greedy_spread', 'k = int(f1.argmax())', 'k = int(f1.argmin())',
          f'{CR}::test_greedy_spread_finds_a_concept_split_over_three_features'),
    Guard('concept report spread: the OR of the chosen features (not the last one alone)',
          'monosemanticity/concept_report.py::greedy_spread', 'union = cover[:, None] | fire_e',
          'union = fire_e | False', f'{CR}::test_greedy_spread_finds_a_concept_split_over_three_features'),
    Guard('concept report spread: the chosen set scored on the SCORE tokens',
          'monosemanticity/concept_report.py::greedy_spread', "'f1': f1_of_or(fire_s[:, chosen].any(1), y_s)}",
          "'f1': f1_of_or(fire_e[:, chosen].any(1), y_e)}",
          f'{CR}::test_greedy_spread_finds_a_concept_split_over_three_features'),
    Guard("concept report spread: each candidate at its own threshold of best EXPLAIN F1",
          'monosemanticity/concept_report.py::top_candidates', 'grid = pairs.grid.T.gather(1, unit)',
          'grid = torch.zeros_like(unit)', f'{CR}::test_spread_on_the_tiny_run_against_brute_force'),
    Guard('concept report spread: pass 3 reads the SAE features',
          'monosemanticity/concept_report.py::pass3_spread_firings',
          "units['features'])", "units['neurons'][:, :1].expand(-1, units['features'].size(1)))",
          f'{CR}::test_spread_on_the_tiny_run_against_brute_force'),
    Guard('concept report: make analysis labels the concepts before analyze.py', 'Makefile',
          '\t$(PYTHON) label_concepts.py --data_dir=data/pystdlib\n\t@if [ $(REPORT)', '\t@if [ $(REPORT)',
          f'{CR}::test_make_analysis_labels_the_concepts_before_analyze'),
    Guard('concept axis: make sweep labels the concepts before training', 'Makefile',
          '\t$(PYTHON) label_concepts.py --data_dir=data/pystdlib\n\t$(PYTHON) train_sae.py config/demo/sweep.py',
          '\t$(PYTHON) train_sae.py config/demo/sweep.py',
          f'{CA}::test_make_sweep_labels_the_concepts_before_training'),
    Guard("concept report: labels of other tokens (concepts.json's tokens_sha256) refused",
          'monosemanticity/concept_report.py::load_concept_labels',
          "info['tokens_sha256'] != file_sha256(os.path.join(data_dir, f'{split}.bin'))", 'False',
          f'{CR}::test_labels_of_other_tokens_by_their_fingerprint_are_one_line_exit_2'),
    Guard('concept report: the median best F1 over the concepts with a SCORE positive',
          'monosemanticity/concept_report.py::best_f1_summary',
          "'median_best_f1': round(float(np.median(f1s)), 4)", "'median_best_f1': round(float(np.mean(f1s)), 4)",
          f'{CR}::test_plot_and_summary_line'),
    # ---------------------------------------------------------------- the concepts each feature detects (item 4)
    Guard('concept report by_feature: a feature detects a concept at held-out F1 >= 0.5 (the constant)',
          'monosemanticity/concept_report.py', 'DETECT_F1 = 0.5  #', 'DETECT_F1 = 0.25  #',
          f'{CR}::test_by_feature_against_brute_force'),
    Guard('concept report by_feature: the cut applied to the held-out F1',
          'monosemanticity/concept_report.py::concepts_by_feature', 'hits = torch.nonzero(f1 >= min_f1).tolist()',
          'hits = torch.nonzero(f1 >= 0.25).tolist()', f'{CR}::test_by_feature_against_brute_force'),
    Guard('concept report by_feature: the threshold per (feature, concept) chosen on the EXPLAIN tokens',
          'monosemanticity/concept_report.py::pair_scores',
          "_, _, f1_e = prf(counts.tp[name, 'explain'], counts.fires[name, 'explain'][:, :, None],\n"
          "                     counts.positives['explain'])",
          "_, _, f1_e = prf(counts.tp[name, 'score'], counts.fires[name, 'score'][:, :, None],\n"
          "                     counts.positives['score'])",
          f'{CR}::test_by_feature_against_brute_force'),
    Guard('concept report by_feature: precision, recall, F1 on the SCORE tokens',
          'monosemanticity/concept_report.py::pair_scores',
          "return PairScores(best_f1, g, *prf(tp, fires, counts.positives['score']))",
          "return PairScores(best_f1, g, *prf(tp, fires, counts.positives['explain']))",
          f'{CR}::test_by_feature_against_brute_force'),
    # ---------------------------------------------------------------- sparse probes of the concepts (issue 23, item 2c)
    Guard('sparse probes: units ranked by the absolute mean difference (not the signed one)',
          'monosemanticity/concept_probe.py::MeanDifferences.differences',
          '(mean_pos - mean_neg).abs() / std[:, None]', '(mean_pos - mean_neg) / std[:, None]',
          f'{CP}::test_units_ranked_by_standardised_mean_difference_on_explain_tokens'),
    Guard("sparse probes: the mean difference divided by the unit's std",
          'monosemanticity/concept_probe.py::MeanDifferences.differences',
          '(mean_pos - mean_neg).abs() / std[:, None]', '(mean_pos - mean_neg).abs() / 1',
          f'{CP}::test_units_ranked_by_standardised_mean_difference_on_explain_tokens'),
    Guard('sparse probes: units ranked on the EXPLAIN tokens',
          'monosemanticity/concept_probe.py::MeanDifferences.add_',
          'explain = torch.from_numpy(np.repeat(self.is_explain[context_ids], self.T))',
          'explain = torch.from_numpy(np.repeat(~self.is_explain[context_ids], self.T))',
          f'{CP}::test_units_ranked_by_standardised_mean_difference_on_explain_tokens'),
    Guard("sparse probes: pass 2 hands each batch to the mean differences", 'analyze.py::main.concept_sums',
          '            mean_diffs.add_(contexts.starts[b0:b1], np.arange(b0, b1), units)', '            pass',
          f'{CP}::test_probes_against_brute_force'),
    Guard('sparse probes: pass 3 hands each batch to the probes',
          'monosemanticity/concept_report.py::pass3_spread_firings',
          '            on_batch(b0, b1, units)', '            pass', f'{CP}::test_probes_against_brute_force'),
    Guard("sparse probes: a sampled token's activations of its own concept's ranked units",
          'monosemanticity/concept_probe.py::ProbeActivations.add_',
          'self.units[name][concept]]', 'self.units[name][:1].expand(len(concept), -1)]',
          f'{CP}::test_probes_against_brute_force'),
    Guard('sparse probes: the training sample is of the EXPLAIN split, the test sample of the SCORE split',
          'monosemanticity/concept_probe.py::probe_tokens',
          'for test, part in ((False, explain), (True, ~explain)):',
          'for test, part in ((False, explain), (True, explain)):',
          f'{CP}::test_sample_is_disjoint_across_the_splits_balanced_and_seeded'),
    Guard('sparse probes: at most per_class tokens of each class (balanced samples)',
          'monosemanticity/concept_probe.py::probe_tokens',
          'rng.choice(where, min(per_class, len(where)), replace=False)', 'where',
          f'{CP}::test_sample_is_disjoint_across_the_splits_balanced_and_seeded'),
    Guard('sparse probes: scored on the SCORE sample (not the EXPLAIN one they are fit on)',
          'monosemanticity/concept_probe.py::concept_probes',
          'train, test = (t.concept == c) & ~t.test, (t.concept == c) & t.test',
          'train, test = (t.concept == c) & ~t.test, (t.concept == c) & ~t.test',
          f'{CP}::test_probes_against_brute_force'),
    Guard('sparse probes: the probe of k reads the top k units of the ranking',
          'monosemanticity/concept_probe.py::probe_concept', 'top = slice(0, k)', 'top = slice(0, k + 1)',
          f'{CP}::test_probes_against_brute_force'),
    Guard('sparse probes: inputs standardised by the training sample',
          'monosemanticity/concept_probe.py::probe_concept', 'mean, std = train.mean(0), train.std(0)',
          'mean, std = test.mean(0), test.std(0)', f'{CP}::test_probes_against_brute_force'),
    Guard('sparse probes: each class weighs 1/2 in the fit (class-balanced)',
          'monosemanticity/concept_probe.py::fit_logistic',
          'weight = torch.where(y, 0.5 / n_pos, 0.5 / (len(y) - n_pos))',
          'weight = torch.where(y, 1 / len(y), 1 / len(y)).double()',
          f'{CP}::test_fit_is_the_class_balanced_optimum'),
    Guard('sparse probes: the L2 penalty on the weights in the fit', 'monosemanticity/concept_probe.py::fit_logistic',
          'grad = X.T @ (weight * (p - yf)) + reg * theta', 'grad = X.T @ (weight * (p - yf))',
          f'{CP}::test_fit_zeroes_the_penalised_gradient'),
    Guard('sparse probes: balanced accuracy, the mean of the true-positive and true-negative rates',
          'monosemanticity/concept_probe.py::balanced_accuracy',
          'return 0.5 * (float(pred[y].double().mean()) + float((~pred[~y]).double().mean()))',
          'return float((pred == y).double().mean())', f'{CP}::test_probes_against_brute_force'),
    Guard('sparse probes: the summary is the median over the probed concepts',
          'monosemanticity/concept_probe.py::probe_results',
          "{'median': round(float(median), 4)", "{'median': round(float(acc.mean()), 4)",
          f'{CP}::test_summary_line_and_plot'),
    Guard('sparse probes: analyze.py writes probing.png', 'analyze.py::main',
          "            plot_probing(concepts, os.path.join(tmp_dir, 'probing.png'))", '            pass',
          f'{CP}::test_summary_line_and_plot'),
]

# families.py and the sweep site's data (build_interface.py --sweep_dir)
FAM = 'tests/test_families.py'
SW = 'tests/test_interface.py'
FAM_GUARDS = [
    Guard('families: SAEs alike in every training key but n_features (a family differs only in size)',
          'monosemanticity/families.py::sae_identity',
          'ident.update({k: v for k, v in m.config.items() if k not in skip and k not in RUN_KEYS})',
          'ident.update({})',
          f'{FAM}::test_families_are_the_saes_alike_but_for_their_size'),
    Guard('activation correlation: the covariance subtracts the means (n·Σxy − Σx·Σy)',
          'monosemanticity/families.py::CorrelationSums.corr',
          'cov = n * self.sum_xy[i, j] - self.sum[i][:, None] * self.sum[j][None, :]',
          'cov = n * self.sum_xy[i, j]',
          f'{FAM}::test_streaming_correlation_equals_numpy_corrcoef'),
    Guard('activation correlation: sums over every batch of the stream',
          'monosemanticity/families.py::CorrelationSums.add_',
          'self.n += len(acts[0])', 'self.n = len(acts[0])',
          f'{FAM}::test_streaming_correlation_equals_numpy_corrcoef'),
    Guard('activation correlation: 0 for a feature that never fires',
          'monosemanticity/families.py::CorrelationSums.corr',
          'return torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))',
          'return cov / denom',
          f'{FAM}::test_streaming_correlation_equals_numpy_corrcoef'),
    Guard('decoder cosine: unit decoder directions', 'monosemanticity/families.py::unit_decoder',
          'return W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)', 'return W',
          f'{FAM}::test_link_sweep_cosines_and_correlations_equal_a_direct_computation'),
    Guard("parents: best first (the first is the best match in the next smaller SAE)",
          'monosemanticity/families.py::add_parents_',
          'np.lexsort((-best, child))', 'np.lexsort((best, child))',
          f'{FAM}::test_a_feature_that_merges_two_has_two_parents'),
    Guard("parents: every feature of the next smaller SAE scoring >= family_threshold (features merge: several)",
          'monosemanticity/families.py::add_parents_',
          'torch.nonzero(score >= threshold, as_tuple=True)',
          'torch.nonzero((score >= threshold) & (score == score.max(0, keepdim=True).values), as_tuple=True)',
          f'{FAM}::test_a_feature_that_merges_two_has_two_parents'),
    Guard("parents: a best match below family_threshold is no parent", 'monosemanticity/families.py::add_parents_',
          'torch.nonzero(score >= threshold, as_tuple=True)', 'torch.nonzero(score > 0, as_tuple=True)',
          f'{FAM}::test_a_link_below_the_threshold_is_no_parent'),
    Guard("family_link='activation' links by activation correlation", 'monosemanticity/families.py',
          "'activation': 'corr'}", "'activation': 'cos'}",
          f'{FAM}::test_parent_links_recover_a_planted_split[activation]'),
    Guard("family_link='masked' links by the masked cosine of the decoded activations", 'monosemanticity/families.py',
          "SCORE_KEYS = {'masked': 'masked',", "SCORE_KEYS = {'masked': 'cos',",
          f'{FAM}::test_parent_links_recover_a_planted_split[masked]'),
    Guard('masked link: of the decoded activations (masked activation cosine × decoder cosine)',
          'monosemanticity/families.py::link_family',
          "'masked': sums.masked_cos(i, j) * cos}", "'masked': sums.masked_cos(i, j)}",
          f'{FAM}::test_parent_links_recover_a_planted_split[masked]'),
    Guard('masked cosine: the greater of the two, on the tokens where either feature fires',
          'monosemanticity/families.py::CorrelationSums.masked_cos',
          'return torch.maximum(by_i, by_j)', 'return by_i',
          f'{FAM}::test_streaming_masked_cosine_equals_a_brute_force_computation'),
    Guard('families: features below family_min_density (ultralow) are not linked',
          'monosemanticity/families.py::link_family',
          'linked = [d >= min_density for d in density]', 'linked = [d >= 0 for d in density]',
          f'{FAM}::test_ultralow_features_are_not_linked'),
    Guard("families: build_interface.py links by the paper's masked cosine by default", 'build_interface.py',
          "family_link = 'masked'  #", "family_link = 'decoder'  #",
          f'{FAM}::test_the_default_link_is_the_papers_masked_cosine'),
    Guard('relatives: the 3 best by the link score', 'monosemanticity/families.py::add_relatives_',
          'top = score.topk(min(N_RELATIVES, n_other), dim=1).indices  # (F, r)',
          'top = score.topk(min(N_RELATIVES, n_other), dim=1, largest=False).indices  # (F, r)',
          f'{FAM}::test_parent_links_recover_a_planted_split'),
    Guard('sweep site: each feature record carries its relatives', 'monosemanticity/site.py::write_member',
          "features = ({**record, 'relatives': job.relatives[record['id']]} for record in features)",
          'pass', f'{SW}::test_sweep_relatives_point_at_existing_features_and_recover_the_split'),
    Guard('sweep site: family nodes list their children (inverse of the parents)',
          'monosemanticity/sweep_site.py::family_nodes',
          "children[p['feature']].append(j)", 'pass',
          'tests/test_browser.py::test_built_sweep_site_from_family_to_relatives'),
    Guard('sweep site: family nodes say whether each feature was linked (not ultralow)',
          'monosemanticity/sweep_site.py::family_nodes',
          "'linked': f['density'] >= min_density,", "'linked': True,",
          f'{SW}::test_sweep_relatives_point_at_existing_features_and_recover_the_split'),
    Guard("sweep site: members' sites without the sweep pages", 'monosemanticity/site.py::write_site',
          "ignore=shutil.ignore_patterns('*.md', '__pycache__', *SWEEP_PAGES)",
          "ignore=shutil.ignore_patterns('*.md', '__pycache__')",
          f'{SW}::test_sweep_site_has_the_contracts_files'),
]
FAM_GUARDS.append(
    Guard('a single build records its config without the sweep key (its output as before the sweep mode)',
          'build_interface.py::main', "without(config, 'analysis', *SWEEP_ONLY)", "without(config, 'analysis')",
          f'{SW}::test_sweep_member_is_its_single_site_plus_relatives'))
# a sweep site's SAEs share each batch's forward pass (site.build_sites), and each gets its own numbers
SWX = f'{SW}::test_sweep_runs_the_transformer_once_per_batch_for_all_its_saes'
SWS = f'{SW}::test_sweep_member_is_its_single_site_plus_relatives'
FAM_GUARDS += [
    Guard("sweep site: each batch of contexts through the transformer once for all the SAEs' passes",
          'monosemanticity/site.py::build_sites',
          '    panels = feature_panels(members, contexts, modes, s, seconds, shared)',
          '    panels = [feature_panels([m], contexts, [mode], s, [sec], shared)[0] '
          'for m, mode, sec in zip(members, modes, seconds)]', SWX),
    Guard('sweep site: each batch of example texts through the transformer once for all the SAEs',
          'monosemanticity/site.py::example_panels',
          "    feed(members, feats, texts, sorted({m.site for m in members}), 'example texts', 'examples', seconds, "
          "shared)",
          "    for m, fe, sec in zip(members, feats, seconds):\n"
          "        feed([m], [fe], texts, [m.site], 'example texts', 'examples', [sec], shared)", SWX),
    Guard("sweep site: each SAE's passes fed its own encoder's features of the shared batch",
          'monosemanticity/site.py::feed', 'one.add_(batch, encode_batch(inputs, batch))',
          'one.add_(batch, encode_batch(members[-1], batch))', SWS),
    Guard("sweep site: each SAE's own example-text features (the texts' tokens shared)",
          'monosemanticity/site.py::example_panels', '    feats = [ExampleFeatures(texts.length) for _ in members]',
          '    feats = [ExampleFeatures(texts.length)] * len(members)', SWS),
]

# the sweep site's pages
SWF = 'tests/test_browser.py::test_sweep_site_from_family_to_relatives'
SWQ = 'tests/test_browser.py::test_sweep_site_pages_without_relatives_and_bad_queries'
SWB = 'tests/test_browser.py::test_built_sweep_site_from_family_to_relatives'
SWP = 'tests/test_browser.py::test_family_page_shows_several_parents_and_no_parent'
WEB_GUARDS = [
    Guard('family page: the asked feature\'s path walks up its parents to the root', 'interface/page_family.js',
          '      path.unshift([l - 1, p]);', '      path.unshift([l - 1, 0]);', SWB),
    Guard('family page: features of the smallest SAE ordered by descendants in the largest', 'interface/page_family.js',
          'if (b[r >> 5] & (1 << (r & 31))) c[r]++;', 'if (b[r >> 5]) c[r]++;', SWF),
    Guard('family page: a feature descends from the roots of every one of its parents', 'interface/page_family.js',
          'for (const p of n.parents) rootOf[l - 1][p.feature]',
          'for (const p of n.parents.slice(0, 1)) rootOf[l - 1][p.feature]', SWF),
    Guard('family tree: a link from each card to each of its parents there', 'interface/page_family.js',
          'for (const p of window.FAMILY.nodes[c.dataset.member][c.dataset.id].parents) {',
          'for (const p of window.FAMILY.nodes[c.dataset.member][c.dataset.id].parents.slice(0, 1)) {', SWP),
    Guard('family page: a card without a parent marked so, an ultralow one marked ultralow', 'interface/page_family.js',
          "(n.linked ? ' noparent' : ' ultralow')", "(n.linked ? ' ultralow' : ' noparent')", SWP),
    Guard('family page: the features in no tree listed, those without a parent apart from the ultralow',
          'interface/page_family.js',
          'l > 0 && n.linked && !n.parents.length ? [j] : []', 'l > 0 && !n.parents.length ? [j] : []', SWP),
    Guard('family tree: the highlighted path\'s links', 'interface/page_family.js',
          "const hot = c.classList.contains('onpath') && parent", 'const hot = parent', SWF),
    Guard('family tree: at most MAX_CARDS per column, the asked path kept', 'interface/page_family.js',
          'const keep = new Set(ids.slice(0, MAX_CARDS).concat(', 'const keep = new Set(ids.slice(0, 1).concat(', SWF),
    Guard('browser: family token chips as text', 'interface/common.js',
          "textChip: (t) => IF.el('span', {className: 'chip', title: IF.textLabel(t)}, [IF.textLabel(t)]),",
          "textChip: (t) => { const e = IF.el('span', {className: 'chip'}); e.innerHTML = IF.textLabel(t); "
          "return e; },", SWF),
    Guard('browser: family token texts made visible (bytes escaped, whitespace shown)', 'interface/common.js',
          "textLabel: (t) => Array.isArray(t) ? t.map(IF.hexByte).join('') || '\\u2205' : IF.visible(String(t), true),",
          'textLabel: (t) => String(t),', SWF),
    Guard('feature page: relatives link into the other SAE\'s site (../<sae>/feature.html)',
          'interface/page_feature.js',
          'IF.memberHref(sweep.root, r.sae, `feature.html?f=${r.feature}`)', '`feature.html?f=${r.feature}`', SWF),
    Guard('feature page: relatives only for a member of a family', 'interface/page_feature.js',
          'if (sweep && sweep.family) main', 'if (true) main', SWQ),
    Guard('pages read the sweep membership where build_interface.py writes it (INDEX.meta.sweep)',
          'interface/common.js',
          '  sweep: () => (window.INDEX && window.INDEX.meta && window.INDEX.meta.sweep) || null,',
          '  sweep: () => (window.INDEX && window.INDEX.sweep) || null,', SWB),
    Guard('sweep page: columns sort ascending first', 'interface/page_sweep.js',
          'return x < y ? -dir : dir;', 'return x < y ? dir : -dir;', SWF),
]
GUARDS += FAM_GUARDS + WEB_GUARDS

# the SAELens points of the Pareto report (bench/saelens.py); the bench's other guards need SAELens installed
# (their test skips without it), so they are not listed here
GUARDS.append(Guard("Pareto report: SAELens's SAEs (<sweep>/saelens/) are source saelens",
                    'monosemanticity/sweep.py::saelens_records',
                    "return pareto_records(root, recipes, names, source='saelens')",
                    'return pareto_records(root, recipes, names)',
                    'tests/test_saelens.py::test_pareto_report_takes_saelens_points'))


# offline automated interpretability (interpret.py): explanations from the EXPLAIN tokens, scores on the SCORE tokens
INTERP = 'tests/test_interpret.py'
GUARDS += [
    Guard('explanations: n-grams do not reach across a context start', 'monosemanticity/explanations.py::ngram_keys',
          'keys[o, :, o:] = keys[o - 1, :, o - 1:-1] * vocab_size + t[:, o:]',
          'keys[o] = np.roll(keys[o - 1], 1, axis=None).reshape(n, T) * vocab_size + t',
          f'{INTERP}::test_ngram_keys_stop_at_the_context_start'),
    Guard('explanations: a pattern needs precision >= min_precision on the EXPLAIN tokens',
          'monosemanticity/explanations.py::candidate_patterns',
          'keep = (fires >= min_pattern_fires) & (fires >= min_precision * matches)',
          'keep = (fires >= min_pattern_fires)', f'{INTERP}::test_patterns_and_scores_equal_brute_force'),
    Guard('explanations: longer contexts only for the firings a shorter pattern left (disjoint patterns)',
          'monosemanticity/explanations.py::candidate_patterns',
          "left &= ~np.isin(fire_keys[order - 1], uniq[keep])", "left &= True",
          f'{INTERP}::test_patterns_and_scores_equal_brute_force'),
    Guard('explanations: the <= max_patterns patterns of highest F1 (Dinkelbach)',
          'monosemanticity/explanations.py::best_subset',
          'gain = 2 * fires - lam * matches', 'gain = 2 * fires - 0 * matches',
          f'{INTERP}::test_the_chosen_patterns_have_the_best_f1_of_any_subset'),
    Guard('detection score: matches counted on the SCORE tokens', 'monosemanticity/explanations.py::explain_and_score',
          'predicted = sum(int(counts_score.count(', 'predicted = sum(int(counts_explain.count(',
          f'{INTERP}::test_scores_come_from_the_score_tokens_only'),
    Guard('detection score: F1 = 2PR/(P+R)', 'monosemanticity/explanations.py::f1_score',
          'return precision, recall, (2 * precision * recall / (precision + recall)',
          'return precision, recall, (precision * recall / (precision + recall)',
          f'{INTERP}::test_patterns_and_scores_equal_brute_force'),
    Guard('score summary: share of units with F1 > 0.5', 'monosemanticity/explanations.py::summarize',
          "'share_f1_above_0.5': stat(np.mean, f1 > 0.5)", "'share_f1_above_0.5': stat(np.mean, f1 >= 0.5)",
          f'{INTERP}::test_summary_equals_numpy'),
    Guard('detection score: a unit firing on EXPLAIN but never on SCORE scores F1 0 (not left out)',
          'monosemanticity/explanations.py::explain_and_score',
          'scored = len(fe) > 0  #', 'scored = len(fe) > 0 and len(fs) > 0  #',
          f'{INTERP}::test_a_unit_silent_on_the_score_tokens_scores_f1_0_and_counts_in_the_median'),
    Guard('score summary: main numbers over every scored unit (F1 0 for no SCORE firing counted)',
          'monosemanticity/explanations.py::summarize', '**stats(scored),', '**stats(with_score_firings),',
          f'{INTERP}::test_summary_both_ways_by_hand'),
]

# analyze.py: the firing rule, the split, the scores and universality on real runs
AN = 'tests/test_analyze.py'
ANALYZE_GUARDS = [
    Guard('analysis: a unit\'s max (its firing threshold) over the EXPLAIN tokens only',
          'monosemanticity/findings.py::pass1_maxima_and_correlations',
          "m = context_max[explain].amax(0) if explain.any()", "m = context_max.amax(0) if explain.any()",
          f'{AN}::test_thresholds_and_firings_from_the_explain_tokens'),
    Guard('analysis: firing threshold = fire_frac x the max over the EXPLAIN tokens',
          'monosemanticity/findings.py::firing_thresholds',
          'explain_max * frac, torch.full_like', 'explain_max * frac * frac, torch.full_like',
          f'{AN}::test_thresholds_and_firings_from_the_explain_tokens'),
    Guard('analysis: a unit whose max is <= 0 has no threshold (not scored)',
          'monosemanticity/findings.py::firing_thresholds',
          'torch.where(explain_max > 0,', 'torch.where(explain_max >= 0,',
          f'{AN}::test_thresholds_and_firings_from_the_explain_tokens'),
    Guard('analysis: EXPLAIN and SCORE contexts are disjoint', 'monosemanticity/findings.py::pick_split',
          'np.sort(perm[:n_explain]), np.sort(perm[n_explain:])',
          'np.sort(perm[:n_explain]), np.sort(perm[n_explain - 1:])',
          f'{AN}::test_report_is_complete_and_the_split_partitions_the_contexts'),
    Guard('analysis: a context\'s firings at its row of its split\'s tokens (flat position row·T + t)',
          'monosemanticity/findings.py::pass2_firings',
          'pos = halves.row[ctx] * T + token % T', 'pos = halves.row[ctx] * T + (token + 1) % T',
          f'{AN}::test_scores_are_the_patterns_on_the_score_tokens'),
    Guard('analysis: rows of tokens_explain in the sorted order of the EXPLAIN contexts',
          'monosemanticity/findings.py::pick_split',
          'row[explain], row[score] = np.arange(len(explain)), np.arange(len(score))',
          'row[explain], row[score] = np.arange(len(explain))[::-1], np.arange(len(score))',
          f'{AN}::test_patterns_are_counted_on_the_explain_tokens'),
    Guard('analysis: explanations scored on the held-out SCORE tokens', 'monosemanticity/findings.py::explain_all',
          'explanations.explain_and_score(firings[name].explain, firings[name].score, tokens_explain,\n'
          '                                                 tokens_score,',
          'explanations.explain_and_score(firings[name].explain, firings[name].explain, tokens_explain,\n'
          '                                                 tokens_explain,',
          f'{AN}::test_scored_on_held_out_tokens_not_the_explain_ones'),
    Guard('universality: correlations over all the contexts\' tokens',
          'monosemanticity/findings.py::pass1_maxima_and_correlations',
          "feature_sums.add_([units['features'], units['features_b']])",
          "feature_sums.add_([units['features'][:T], units['features_b'][:T]])",
          f'{AN}::test_universality_is_the_max_correlation_over_all_tokens'),
    Guard('universality: per unit of run A its max correlation with any unit of run B',
          'monosemanticity/findings.py::best_matches',
          'r, j = corr.double().cpu().max(1)', 'r, j = corr.double().cpu().mean(1), corr.double().cpu().argmax(1)',
          f'{AN}::test_universality_is_the_max_correlation_over_all_tokens'),
    Guard('universality: features_b is run B -> run A', 'analyze.py::main',
          "best_matches(stats.feature_sums.corr(0, 1).T,", "best_matches(stats.feature_sums.corr(0, 1),",
          f'{AN}::test_universality_is_the_max_correlation_over_all_tokens'),
    Guard('activation correlation, dense path (neurons): Σxy of the two sets',
          'monosemanticity/families.py::CorrelationSums.add_',
          's += acts[i].T.double() @ acts[j].double() if self.dense',
          's += acts[i].T.double() @ acts[i].double() if self.dense',
          f'{AN}::test_universality_is_the_max_correlation_over_all_tokens'),
    Guard("analysis: a neuron's output tokens from its c_proj column (the unit vector of the site)",
          'monosemanticity/findings.py::output_tokens',
          'else torch.eye(sae.cfg.d_in, device=sae.W_dec.device))',
          'else torch.eye(sae.cfg.d_in, device=sae.W_dec.device).roll(1, 0))',
          f'{AN}::test_output_tokens_are_the_logit_lens_of_each_direction'),
    Guard('analysis: non-finite activations refused in one line naming the run and site',
          'monosemanticity/findings.py::refuse_nonfinite_units',
          'if not bool(torch.isfinite(sums.sum[i]).all()):', 'if False:',
          f'{AN}::test_nonfinite_activations_are_refused_naming_the_run_and_site'),
    Guard('analysis: both runs read the same site', 'monosemanticity/findings.py::check_comparable',
          'if a.sae.site != b.sae.site:', 'if False:',
          f'{AN}::test_bad_input_is_one_line_and_leaves_the_old_analysis'),
    Guard('analysis table: the median F1 column over every scored unit (no SCORE firing: F1 0)',
          'monosemanticity/findings.py::summary_table',
          "{fmt(s['median_f1'], '.3f'):>9}", "{fmt(w['median_f1'], '.3f'):>9}",
          f'{AN}::test_the_printed_table_gives_the_median_f1_both_ways'),
]
GUARDS += ANALYZE_GUARDS

# the analysis on the feature browser (build_interface.py --analysis, the pages)
SA = 'tests/test_site_analysis.py'
SAF = f'{SA}::test_feature_page_shows_explanation_score_and_links_the_best_match'
SAI = f'{SA}::test_index_sorts_by_f1_and_match_and_searches_explanations'
SITE_GUARDS = [
    Guard("a build without a report records the config as before the analysis key (meta.json unchanged)",
          'build_interface.py::main', "without(config, 'analysis', *SWEEP_ONLY)", 'without(config, *SWEEP_ONLY)',
          f'{SA}::test_without_a_report_the_site_is_as_before'),
    Guard("site analysis: run B's site shows features_b (side b), run A's features",
          'monosemanticity/site_analysis.py::site_analysis',
          "key, other = ('features', 'b') if side == 'a' else ('features_b', 'a')",
          "key, other = ('features', 'b') if side else ('features_b', 'a')",
          f'{SA}::test_site_holds_the_reports_numbers_of_its_side[b]'),
    Guard("site analysis: the best match links into the OTHER run's site",
          'monosemanticity/site_analysis.py::site_analysis',
          "os.path.abspath(report['runs'][other]['out_dir'])", "os.path.abspath(report['runs'][side]['out_dir'])",
          f'{SA}::test_site_holds_the_reports_numbers_of_its_side'),
    Guard('site analysis: INDEX.match is [best feature, r] of each feature',
          'monosemanticity/site_analysis.py::site_analysis',
          "'match': [[j, r] for j, r in best]}", "'match': [[r, j] for j, r in best]}",
          f'{SA}::test_site_holds_the_reports_numbers_of_its_side'),
    Guard("site analysis: a record's match is its best feature and r",
          'monosemanticity/site_analysis.py::site_analysis',
          "'match': {'feature': j, 'corr': r}}", "'match': {'feature': 0, 'corr': r}}",
          f'{SA}::test_site_holds_the_reports_numbers_of_its_side'),
    Guard('site analysis: INDEX.explain holds the first 3 patterns', 'monosemanticity/site_analysis.py::site_analysis',
          "[u['patterns'][:N_EXPLAIN] for u in units]", "[u['patterns'][:1] for u in units]",
          f'{SA}::test_site_holds_the_reports_numbers_of_its_side'),
    Guard('site analysis: a report must name this SAE (auto: ignored with a note; a path: one-line error)',
          'monosemanticity/site_analysis.py::check_report',
          '        if side is None:\n', '        if side is None and False:\n',
          f'{SA}::test_explicit_foreign_report_is_one_line_exit_2'),
    Guard("site analysis: auto ignores a report older than the SAE's weights",
          'monosemanticity/site_analysis.py::check_report',
          'if check_age and os.path.getmtime(path) < os.path.getmtime(weights):', 'if False:',
          f'{SA}::test_auto_ignores_a_report_that_does_not_apply[stale]'),
    Guard('site analysis: a report that is not complete is not shown', 'monosemanticity/site_analysis.py::check_report',
          "if report.get('complete') is not True:", 'if False:',
          f'{SA}::test_auto_ignores_a_report_that_does_not_apply[incomplete]'),
    Guard("site analysis: the report's units are this SAE's features, one per feature in id order",
          'monosemanticity/site_analysis.py::check_report',
          "if [u['id'] for u in units] != list(range(n_features)) or len(best) != n_features:",
          'if False:', f'{SA}::test_auto_ignores_a_report_that_does_not_apply[other_size]'),
]
SITE_WEB_GUARDS = [
    Guard("feature page: the best match links into the other run's site", 'interface/page_feature.js',
          "{href: `${A.other_site}feature.html?f=${m.feature}`, id: 'matchlink'}",
          "{href: `feature.html?f=${m.feature}`, id: 'matchlink'}", SAF),
    Guard('feature page: the link goes to the best match (not this id)', 'interface/page_feature.js',
          "{href: `${A.other_site}feature.html?f=${m.feature}`, id: 'matchlink'}",
          "{href: `${A.other_site}feature.html?f=${d.id}`, id: 'matchlink'}", SAF),
    Guard('feature page: the explanation panel only with an analysis', 'interface/page_feature.js',
          'if (d.analysis && M.analysis) main', 'if (true) main', SAF),
    Guard('feature page / index: explanation tokens as text', 'interface/common.js',
          '      [IF.visible(t.text, true)]))),',
          '      [])).map((c, k) => Object.assign(c, {innerHTML: IF.visible(IF.tokenTexts(ids)[k].text, true)}))),',
          SAI),
    Guard('index: the F1 column sorts by F1', 'interface/page_index.js',
          'return Object.assign(row, {f1: D.f1[i],', 'return Object.assign(row, {f1: D.max[i],', SAI),
    Guard('index: the match r column sorts by r', 'interface/page_index.js',
          'match_r: D.match[i][1],', 'match_r: D.match[i][0],', SAI),
    Guard('index: unscored features sort below every F1', 'interface/page_index.js',
          'const v = (r) => r[k] ?? -Infinity;', 'const v = (r) => r[k] ?? 2;', SAI),
    Guard("index: search looks in the explanations' token texts", 'interface/page_index.js',
          "hay: row.hay + '\\u0002' + D.explain[i]", "hay: row.hay + '\\u0002' + [].slice(0)", SAI),
    Guard("index: each row's match links into the other run's site", 'interface/page_index.js',
          '{href: `${other}feature.html?f=${r.match}`', '{href: `feature.html?f=${r.match}`', SAI),
    # ground-truth concepts (issue 23, item 4)
    Guard("browser: the concepts are shown on run A's site only (the report's concepts are run A's features)",
          'monosemanticity/site_analysis.py::site_analysis', "if side == 'a' and 'concepts' in report:",
          "if 'concepts' in report:", f'{SA}::test_site_holds_the_reports_numbers_of_its_side'),
    Guard('browser: the index keeps the features detecting the chosen concept (?concept=NAME)',
          'interface/page_index.js', 'if (s.concept !== null && r.cf1 === null) return false;',
          'if (false) return false;', f'{SA}::test_index_filters_by_a_concept'),
    Guard("browser: a feature page's concept links to its row on concepts.html", 'interface/page_feature.js',
          "el('a', {href: IF.conceptHref(C.concepts[c].name), className: 'clink'}",
          "el('a', {href: 'concepts.html', className: 'clink'}",
          f'{SA}::test_feature_page_lists_the_concepts_it_detects_each_linked'),
    Guard("browser: concepts.html links each concept's best feature", 'interface/page_concepts.js',
          "el('a', {href: `feature.html?f=${c.feature.id}`, className: 'bestf'}",
          "el('a', {href: `feature.html?f=${c.neuron.id}`, className: 'bestf'}",
          f'{SA}::test_concepts_page_lists_every_concept_with_its_best_feature_and_neuron_linked'),
]
GUARDS += SITE_GUARDS + SITE_WEB_GUARDS

# the Neuronpedia export (neuronpedia.py, build_interface.py --neuronpedia=True)
NP = 'tests/test_neuronpedia.py'
NEURONPEDIA_GUARDS = [
    Guard('neuronpedia: build_interface.py --neuronpedia=True writes the export',
          'monosemanticity/site.py::write_member',
          '    if s.neuronpedia:  # the same data in Neuronpedia', '    if False:  # the same data in Neuronpedia',
          f'{NP}::test_layout_and_header_rows'),
    Guard("neuronpedia: pos_str are the tokens a feature's logits raise most",
          'monosemanticity/neuronpedia.py::feature_row',
          "pos_str=[token_text(vocab[t]) for t, _ in logits['pos']]",
          "pos_str=[token_text(vocab[t]) for t, _ in logits['neg']]", f'{NP}::test_feature_rows_equal_the_site'),
    Guard('neuronpedia: frac_nonzero is the density (share of tokens fired on)',
          'monosemanticity/neuronpedia.py::feature_row',
          "frac_nonzero=record['density'],", "frac_nonzero=record['n_fire'],",
          f'{NP}::test_feature_rows_equal_the_site'),
    Guard("neuronpedia: histogram bar values are the bins' centres (SAEDashboard HistogramData)",
          'monosemanticity/neuronpedia.py::bin_centres',
          'round(lo + (hi - lo) * (j + 0.5) / n, 5)', 'round(lo + (hi - lo) * j / n, 5)',
          f'{NP}::test_feature_rows_equal_the_site'),
    Guard('neuronpedia: feature index is a string (Neuronpedia\'s text column)',
          'monosemanticity/neuronpedia.py::feature_row',
          "layer=names.source_id, index=str(record['id']), creatorId=CREATOR_ID,",
          "layer=names.source_id, index=record['id'], creatorId=CREATOR_ID,",
          f'{NP}::test_feature_rows_equal_the_site'),
    Guard("neuronpedia: an activation row's tokens are its window's positions (not the next-token target)",
          'monosemanticity/neuronpedia.py::activation_rows',
          "tokens=[token_text(vocab[t]) for t in w['tokens'][:len(values)]]",
          "tokens=[token_text(vocab[t]) for t in w['tokens']]", f'{NP}::test_activation_rows_equal_the_site_windows'),
    Guard("neuronpedia: qualifyingTokenIndex is the example's position in the window",
          'monosemanticity/neuronpedia.py::activation_rows',
          "qualifyingTokenIndex=w['pos'] - w['start'])", "qualifyingTokenIndex=w['pos'])",
          f'{NP}::test_activation_rows_equal_the_site_windows'),
    Guard("neuronpedia: an interval's rows carry its share as binContains",
          'monosemanticity/neuronpedia.py::activation_rows',
          "(iv['lo'], iv['hi'], iv['share'], iv['samples'])", "(iv['lo'], iv['hi'], iv['n'], iv['samples'])",
          f'{NP}::test_activation_rows_equal_the_site_windows'),
    Guard('neuronpedia: batch-N files are written atomically (temp + rename)',
          'monosemanticity/neuronpedia.py::jsonl_gz',
          "    with atomic_file(path, 'wb') as raw, gzip.GzipFile(", "    with open(path, 'wb') as raw, gzip.GzipFile(",
          f'{NP}::test_failed_export_leaves_no_partial_file'),
    Guard('neuronpedia: FEATURES_PER_BATCH features per batch-N file, read a feature file at a time',
          'monosemanticity/neuronpedia.py::site_records',
          "for file in range(f0 // per_file, -(-f1 // per_file)):", "for file in range(0, -(-f1 // per_file)):",
          f'{NP}::test_batches_stream_and_concatenate'),
]
GUARDS += NEURONPEDIA_GUARDS

# the sparse TopK / BatchTopK step (autoencoder.sparse_topk_loss; train_sae.py --sparse_topk=True)
SP = 'tests/test_sparse_step.py'
EQ = f'{SP}::test_sparse_loss_and_gradients_equal_the_dense_path'
TRAIN = f'{SP}::test_train_steps_take_the_sparse_path_and_equal_the_dense_steps'

GUARDS_SPARSE = [
    # ---------------------------------------------------------------- sparse TopK / BatchTopK step
    Guard('sparse step: the TopK family (topk, batchtopk, matryoshka) trains through sparse_topk_loss',
          'autoencoder.py::TopK',
          "    saelens_architecture = 'topk'\n    sparse = True\n",
          "    saelens_architecture = 'topk'\n    sparse = False\n", TRAIN),
    Guard('sparse step: pre-encoder bias x̄ = x - b_dec', 'autoencoder.py::sparse_topk_loss',
          'xbar = xs - sae.b_dec if kind.pre_bias else xs  # (B, d)', 'xbar = xs  # (B, d)', EQ),
    Guard('sparse step: encoder GEMM x̄ W_encᵀ + b_enc', 'autoencoder.py::encoder_gemm',
          'torch.addmm(sae.b_enc, xbar, sae.W_enc.T, out=out)',
          'torch.addmm(0 * sae.b_enc, xbar, sae.W_enc.T, out=out)', EQ),
    Guard('sparse step, bf16: b_enc rides in the GEMM as the last column of [W_enc, b_enc]',
          'autoencoder.py::encoder_gemm',
          'wea[:, d].copy_(sae.b_enc)', 'wea[:, d].zero_()', EQ),
    Guard('sparse step, bf16: ... times the ones column of [x̄, 1]', 'autoencoder.py::encoder_gemm',
          'xa[:, d].fill_(1)', 'xa[:, d].fill_(0.5)', EQ),
    Guard('sparse step, bf16: W_enc cast into [W_enc, b_enc]', 'autoencoder.py::encoder_gemm',
          'wea[:, :d].copy_(sae.W_enc)', 'wea[:, :d].copy_(sae.W_enc.roll(1, 0))', EQ),
    Guard('sparse step: x̂ = Σ_j f_j W_dec[:, j] + b_dec from the kept codes', 'autoencoder.py::TopK.sparse_recon',
          "err = (sparse_decode(sae, f, code, W_rows, 'sp_gW_dec') + sae.b_dec).float() - xs",
          "err = sparse_decode(sae, f, code, W_rows, 'sp_gW_dec').float() - xs", EQ),
    Guard('sparse step: the main loss is the kind\'s (topk: MSE × mse_scale)', 'autoencoder.py::TopK.sparse_recon',
          '        return err, recon_term(sae, err)\n', '        return err, err.pow(2).mean()\n', EQ),
    Guard('sparse step: batchtopk keeps the k·B largest over the batch', 'autoencoder.py::topk_code',
          'if isinstance(sae.kind, BatchTopK) and sae.training:',
          'if False:', EQ),
    # (no guard for "ReLU before the batch top-k" in topk_code: without it the kept set differs only in entries
    #  whose activation is 0 either way (ReLU'd negatives), so loss, gradients, fired and l0 are unchanged: an
    #  equivalent mutant; the dense batch_topk_relu's guard stays)
    Guard('sparse step: ReLU of the kept pre-activations', 'autoencoder.py::sparse_topk_loss',
          "f = sparse_encode(sae, xbar, pre_values, code, ops, 'sp_gW_enc').relu()  # (N,)",
          "f = sparse_encode(sae, xbar, pre_values, code, ops, 'sp_gW_enc')  # (N,)", EQ),
    Guard('sparse step: fired mask from the kept codes (fire counters, AuxK dead set)',
          'autoencoder.py::sparse_topk_loss',
          'index_add_(0, code.cols, (f.detach() > kind.fire_threshold)',
          'index_add_(0, code.rows, (f.detach() > kind.fire_threshold)', EQ),
    Guard('sparse step: dW_enc = (dpre sparse)ᵀ x̄', 'autoencoder.py::SparseEncode.backward',
          'g_W_enc = _in_param_dtype(_by_col_sum(code, gc, xbar)[:, :d], grad_buf)  # (F, d)',
          'g_W_enc = _in_param_dtype(_by_col_sum(code, gc, xbar + 1)[:, :d], grad_buf)  # (F, d)', EQ),
    Guard('sparse step: db_enc = Σ dpre per column', 'autoencoder.py::SparseEncode.backward',
          'g_b_enc = g.new_zeros(W_enc.shape[0]).index_add_(0, code.cols, g)',
          'g_b_enc = g.new_zeros(W_enc.shape[0]).index_add_(0, code.rows % W_enc.shape[0], g)', EQ),
    Guard('sparse step: the pre-encoder bias gets the encoder gradient (x̄ = x - b_dec)',
          'autoencoder.py::SparseEncode.backward',
          '        if ctx.needs_input_grad[0]:  # (B, d)',
          '        if False:  # (B, d)', EQ),
    Guard('sparse step: dW_dec from the kept codes (weighted by f)', 'autoencoder.py::SparseDecode.backward',
          'g_W_dec = grad_buf.copy_(_by_col_sum(code, values, g).T)  # (d, F)',
          'g_W_dec = grad_buf.copy_(_by_col_sum(code, torch.ones_like(values), g).T)  # (d, F)', EQ),
    Guard('sparse step, bf16: dW_dec from the kept codes (weighted by f)', 'autoencoder.py::SparseDecode.backward',
          '_by_col_sum(code, values.to(t_buf.dtype), g.to(t_buf.dtype))',
          '_by_col_sum(code, torch.ones_like(values).to(t_buf.dtype), g.to(t_buf.dtype))', EQ),
    Guard('sparse step: df = g · W_dec[:, j] reaches the encoder', 'autoencoder.py::SparseDecode.backward',
          '        return g_values, g_W_dec, None',
          '        return None, g_W_dec, None', EQ),
    Guard('sparse step: df computed column by column is put back in entry order', 'autoencoder.py::_entry_dots',
          'return torch.empty_like(by_col).index_copy_(0, code.by_col, by_col)', 'return by_col', EQ),
    Guard('sparse step: entries ordered by column for the (F, d) gradients', 'autoencoder.py::sparse_code',
          'by_col = cols.view(1, -1).argsort(dim=1, stable=True).view(-1)',
          'by_col = torch.arange(cols.shape[0], device=cols.device)', EQ),
    Guard("sparse AuxK: only the dead latents' pre-activations", 'autoencoder.py::sparse_auxk_loss',
          'row_topk_code(pre.masked_fill_(~dead, -math.inf), min(k_aux(sae.cfg), int(dead.sum())))',
          'row_topk_code(pre, min(k_aux(sae.cfg), int(dead.sum())))', EQ),
    Guard("sparse AuxK: ReLU on the dead latents' values", 'autoencoder.py::sparse_auxk_loss',
          "z = sparse_encode(sae, xbar, pre_values, code, ops, 'sp_gW_enc_aux').relu()  # (B·k,)",
          "z = sparse_encode(sae, xbar, pre_values, code, ops, 'sp_gW_enc_aux')  # (B·k,)", EQ),
    Guard("sparse AuxK: on the residual not detached (batchtopk's 'bussmann' AuxK trains through it)",
          'autoencoder.py::sparse_topk_loss',
          '    aux = sparse_auxk_loss(sae, pre, xbar, err, dead, W_rows, ops)\n',
          '    aux = sparse_auxk_loss(sae, pre, xbar, err.detach(), dead, W_rows, ops)\n', EQ),
    Guard('sparse step: a gradient left in a scratch buffer is copied out before the next loss',
          'autoencoder.py::sparse_topk_loss',
          '    B, kind = x.shape[0], sae.kind\n    _unalias_grads_(sae)\n',
          '    B, kind = x.shape[0], sae.kind\n', f'{SP}::test_gradients_accumulate_over_two_backwards'),
    Guard('sparse step: train_sae.py --sparse_topk=True reaches the step', 'train_sae.py::train_member_step',
          '                        sparse=m.sparse)', '                        sparse=False)',
          'tests/test_train_sae.py::test_sparse_topk_is_the_default_step[topk]'),
    Guard("train_sae.py's aux_coeff and k_aux reach the SAE", 'train_sae.py::build',
          "k_aux=c['k_aux'], aux_coeff=c['aux_coeff'],", '',
          'tests/test_train_sae.py::test_initialisation_of_a_run[topk-none-paper]'),
    Guard('sparse step: the default of train_sae.py', 'train_sae.py',
          "\nsparse_topk = 'auto'", "\nsparse_topk = 'false'",
          'tests/test_train_sae.py::test_sparse_topk_is_the_default_step[matryoshka_batchtopk]'),
    Guard("sparse step: sparse_topk='auto' takes each SAE's faster step", 'train_sae.py::build',
          "m.sparse = sparse_step_pays(sae.cfg) if sparse_topk == 'auto'",
          "m.sparse = sae.kind.sparse if sparse_topk == 'auto'",
          'tests/test_train_sae.py::test_sparse_topk_auto_keeps_the_dense_step_where_it_is_faster'),
    Guard("sparse step, 'auto': the dense step below SPARSE_MIN_FEATURES", 'autoencoder.py',
          '\nSPARSE_MIN_FEATURES = 1024', '\nSPARSE_MIN_FEATURES = 1',
          f'{SP}::test_sparse_step_pays_where_bench_sparse_step_measured_it'),
    Guard("sparse step, 'auto': the dense step below F = 32·k", 'autoencoder.py',
          '\nSPARSE_MIN_FEATURES_PER_K = 32', '\nSPARSE_MIN_FEATURES_PER_K = 1',
          f'{SP}::test_sparse_step_pays_where_bench_sparse_step_measured_it'),
]
GUARDS += GUARDS_SPARSE

# the browser's token and co-activation counts, exact and sparse past dense_stats_mb
SST = 'tests/test_sparse_stats.py'
GUARDS_SPARSE_STATS = [
    Guard('browser sparse token counts: merged batches sum their counts',
          'monosemanticity/feature_stats.py::TokenCounts.merge_',
          '.index_add_(0, inverse, counts)', '.index_put_((inverse,), counts)', SST),
    Guard("browser sparse token counts: a block of rows is its features' keys",
          'monosemanticity/feature_stats.py::TokenCounts.rows',
          'block[self.keys[lo:hi] - sl.start * V]', 'block[self.keys[lo:hi] - sl.start]', SST),
    Guard('browser sparse co-activation: only the first coact_tokens tokens',
          'monosemanticity/feature_stats.py::CoactCounts.add_',
          'e = int(torch.searchsorted(t_idx, len(fire)))', 'e = len(t_idx)', SST),
    Guard('browser sparse co-activation: firings keep their token across batches',
          'monosemanticity/feature_stats.py::CoactCounts.add_',
          'self.firings.append(((t_idx[:e] + t0).int()', 'self.firings.append(((t_idx[:e]).int()', SST),
    Guard('browser sparse co-activation: each firing pairs with every firing of its token',
          'monosemanticity/feature_stats.py::CoactCounts.rows',
          '- torch.repeat_interleave(w.cumsum(0) - w, w)', '- torch.repeat_interleave(w.cumsum(0) - w, w) * 0', SST),
    Guard('browser sparse co-activation: pair steps cover every firing once',
          'monosemanticity/feature_stats.py::pair_steps',
          'b = max(int(torch.searchsorted(ends, done + budget, right=True)), a + 1)',
          'b = max(int(torch.searchsorted(ends, done + budget, right=True)), a + 1) + 1', SST),
    Guard('browser sparse co-activation: n(this) is each feature\'s firings',
          'monosemanticity/feature_stats.py::CoactCounts.diagonal',
          'return torch.bincount(self.index()[1], minlength=self.n_feat).int()',
          'return torch.bincount(self.index()[1], minlength=self.n_feat).int() + 1', SST),
    Guard('browser: (F, V) token counts sparse past dense_stats_mb',
          'monosemanticity/feature_stats.py::Pass1Counts.__init__',
          'token_counts = TokenCounts(n_feat, V, dev, dense=n_feat * V * 4 <= dense_mb * 2 ** 20)',
          'token_counts = TokenCounts(n_feat, V, dev, dense=True)', f'{SST}::test_pass1_is_sparse_past_dense_stats_mb'),
    Guard('browser: (F, F) co-activation counts sparse past dense_stats_mb',
          'monosemanticity/feature_stats.py::Pass1Counts.__init__',
          'coact = CoactCounts(n_feat, dev, dense=n_feat * n_feat * 4 <= dense_mb * 2 ** 20)',
          'coact = CoactCounts(n_feat, dev, dense=True)', f'{SST}::test_pass1_is_sparse_past_dense_stats_mb'),
    Guard('browser ablation past the budget: each pair reads its own row of its feature block',
          'monosemanticity/logit_effects.py::feature_blocks',
          'directions.rows(ids[b0:b1]), row - b0', 'directions.rows(ids[b0:b1]), row',
          f'{SST}::test_ablation_effects_by_feature_blocks_equal_the_dense_logits_and_brute_force'),
    Guard('browser ablation past the budget: a block holds only its features\' pairs',
          'monosemanticity/logit_effects.py::feature_blocks',
          '((row >= b0) & (row < b1))', '((row >= 0) & (row < b1))',
          f'{SST}::test_ablation_effects_by_feature_blocks_equal_the_dense_logits_and_brute_force'),
    Guard('browser ablation past the budget: rare features get their row with their pair',
          'monosemanticity/logit_effects.py::local_ablation_effects',
          'z_u = (directions.rows(f_o, out=buffers[1][:m]) if Z_u is None',
          'z_u = (directions.rows(f_o.flip(0), out=buffers[1][:m]) if Z_u is None',
          f'{SST}::test_ablation_effects_by_feature_blocks_equal_the_dense_logits_and_brute_force'),
]
GUARDS += GUARDS_SPARSE_STATS
GUARDS.append(Guard('browser: logit weights by rows past dense_stats_mb, Z_u = W_U(γ⊙u_c)',
                    'monosemanticity/logit_effects.py::FeatureLogits.rows',
                    'return torch.matmul(self.centred[idx] * self.gamma, self.W_U.T, out=out)',
                    'return torch.matmul(self.centred[idx], self.W_U.T, out=out)',
                    f'{SST}::test_site_from_sparse_counts_is_the_dense_one'))
GUARDS.append(Guard('fused step: scratch buffers made zeroed (bf16 GEMMs read their padding)', 'autoencoder.py::_buf',
                    't = sae._ws[name] = torch.zeros((rows, ld)', 't = sae._ws[name] = torch.empty((rows, ld)',
                    'tests/test_autoencoder.py::test_bf16_step_never_reads_garbage_from_its_scratch_buffers'))

# guards that act where the element acts (issue 21 item 8): each element run at a setting where breaking it changes
# the result (a knob away from its default or from 1, a second rank, b_dec not 0, the inference mode), and the
# elements whose only other test needs an optional dependency (SAELens, Chromium) checked without it
ST, RK, SLF = 'tests/test_settings.py', 'tests/test_ranks.py', 'tests/test_saelens_format.py'
PAGES = 'tests/test_page_sources.py::test_no_page_script_turns_a_string_into_markup'
GUARDS += [
    Guard('topk AuxK: k_aux 0 means d_in // 2 dead latents per row', 'autoencoder.py::k_aux',
          "cfg.d_in // 2 if topk_loss(cfg) == 'openai'", "cfg.d_in if topk_loss(cfg) == 'openai'",
          f'{ST}::test_k_aux_default_is_half_the_input_width'),
    Guard('topk AuxK: weighed by aux_coeff (autograd path)', 'autoencoder.py::SparseAutoencoder.loss',
          'loss = recon + l1_coeff * l1 + self.cfg.aux_coeff * aux', 'loss = recon + l1_coeff * l1 + aux / 32',
          f'{ST}::test_aux_coeff_weighs_the_auxk_term'),
    Guard('topk AuxK: weighed by aux_coeff (sparse step)', 'autoencoder.py::sparse_topk_loss',
          "'loss': recon + sae.cfg.aux_coeff * aux", "'loss': recon + aux / 32",
          f'{ST}::test_aux_coeff_weighs_the_auxk_term'),
    Guard('batchtopk: θ\'s running mean at the rate topk_threshold_lr', 'autoencoder.py::BatchTopK.after_step_',
          'lr = sae.cfg.topk_threshold_lr', 'lr = 0.01',
          f'{ST}::test_topk_threshold_lr_is_the_rate_of_the_running_mean'),
    Guard('jumprelu: f\'s straight-through window is jumprelu_bandwidth', 'autoencoder.py::JumpReLU.activate',
          'JumpReLUFunction.apply(pre, sae.log_threshold.exp(), sae.cfg.jumprelu_bandwidth)',
          'JumpReLUFunction.apply(pre, sae.log_threshold.exp(), 0.001)',
          f'{ST}::test_jumprelu_bandwidth_sets_the_straight_through_window'),
    Guard('jumprelu: the L0 term\'s straight-through window is jumprelu_bandwidth',
          'autoencoder.py::JumpReLU.loss_terms',
          'StepFunction.apply(pre, sae.log_threshold.exp(), sae.cfg.jumprelu_bandwidth)',
          'StepFunction.apply(pre, sae.log_threshold.exp(), 0.001)',
          f'{ST}::test_jumprelu_bandwidth_sets_the_straight_through_window'),
    Guard('april2024: decoder columns start at norm dec_init_norm', 'autoencoder.py::April2024.dec_init_norm',
          'return cfg.dec_init_norm', 'return 0.1', f'{ST}::test_april2024_decoder_init_norm_is_the_configured_one'),
    Guard('Adam with the given betas', 'autoencoder.py::make_adam', 'lr=lr, betas=betas, eps=eps, fused=fused',
          'lr=lr, eps=eps, fused=fused', f'{ST}::test_make_adam_steps_with_the_given_betas_and_eps'),
    Guard('Adam with the given eps', 'autoencoder.py::make_adam', 'lr=lr, betas=betas, eps=eps, fused=fused',
          'lr=lr, betas=betas, fused=fused', f'{ST}::test_make_adam_steps_with_the_given_betas_and_eps'),
    Guard('topk: a latent has fired above 1e-3 (openai)', 'autoencoder.py::TopK', 'fire_threshold = 1e-3  # openai',
          'fire_threshold = 0.0  # openai', f'{ST}::test_a_tiny_activation_fires_by_the_kinds_rule'),
    Guard('batchtopk: a latent has fired above 0', 'autoencoder.py::BatchTopK',
          'fire_threshold = 0.0  # the references', 'fire_threshold = 1e-3  # the references',
          f'{ST}::test_a_tiny_activation_fires_by_the_kinds_rule'),
    Guard('layer_norm: the step\'s mse in the input\'s units (times std²)',
          'autoencoder.py::SparseAutoencoder._mse_in_input_units', '(sq * stats[1].float().pow(2)).mean()',
          '(sq * stats[1].float()).mean()', f'{ST}::test_training_mse_is_in_the_inputs_units_under_layer_norm'),
    Guard('fold_scale_: b_dec divided by the scale', 'autoencoder.py::fold_scale_', '    sae.b_dec.div_(s)\n',
          '    pass\n', f'{ST}::test_fold_scale_divides_b_dec_too'),
    Guard('evaluate_sae: the SAE in inference mode (batchtopk\'s θ, not the batch top-k)',
          'monosemanticity/metrics.py::evaluate_saes', '        sae.eval()\n', '        pass\n',
          f'{ST}::test_evaluate_sae_measures_the_inference_features_and_restores_training'),
    Guard('evaluate_sae: the SAE\'s training mode restored (train_sae.py evaluates mid-training)',
          'monosemanticity/metrics.py::evaluate_saes', '        sae.train(mode)\n', '        pass\n',
          f'{ST}::test_evaluate_sae_measures_the_inference_features_and_restores_training'),
    Guard('torchrun: gradients averaged over the ranks (÷ world size)', 'autoencoder.py::_sync_grads_',
          'p.grad.div_(dist.get_world_size())', 'pass',
          f'{RK}::test_gradients_are_averaged_and_fire_counters_merged_over_ranks'),
    Guard('torchrun: gradients summed over the ranks', 'autoencoder.py::_sync_grads_',
          '            dist.all_reduce(p.grad)\n', '',
          f'{RK}::test_gradients_are_averaged_and_fire_counters_merged_over_ranks'),
    Guard('torchrun: fire counters add every rank\'s tokens', 'autoencoder.py::update_fire_counter_',
          'n_tokens *= dist.get_world_size()', 'pass',
          f'{RK}::test_gradients_are_averaged_and_fire_counters_merged_over_ranks'),
    Guard('torchrun: a latent fired on any rank has fired', 'autoencoder.py::update_fire_counter_',
          '        dist.all_reduce(fired, op=dist.ReduceOp.MAX)\n', '',
          f'{RK}::test_gradients_are_averaged_and_fire_counters_merged_over_ranks'),
    Guard('torchrun: AuxK\'s dead window counts every rank\'s tokens of the step', 'autoencoder.py::TopK.auxk_dead',
          'n_tokens = batch_rows * (dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1)',
          'n_tokens = batch_rows', f'{RK}::test_auxk_dead_window_counts_every_ranks_tokens'),
    Guard('torchrun: batchtopk θ from the mean over ranks of the smallest kept activation',
          'autoencoder.py::BatchTopK.after_step_', 'smallest /= ranks', 'pass',
          f'{RK}::test_batchtopk_threshold_is_the_mean_over_ranks'),
    Guard('torchrun: batchtopk θ from every rank\'s smallest kept activation', 'autoencoder.py::BatchTopK.after_step_',
          '            dist.all_reduce(smallest)\n', '', f'{RK}::test_batchtopk_threshold_is_the_mean_over_ranks'),
    Guard('torchrun: the resampling window in tokens of every rank', 'train_sae.py::build',
          "max_steps, batch_size * world_size)", "max_steps, batch_size)",
          f'{T}::test_torchrun_two_ranks_stay_in_sync'),
    Guard('train_sae.py: the recipe\'s Adam betas and eps reach the optimizer', 'train_sae.py::build',
          'm.opt = make_adam(sae, m.recipe.lr, m.recipe.adam_betas, m.recipe.adam_eps)',
          'm.opt = make_adam(sae, m.recipe.lr)', f'{T}::test_the_recipes_adam_reaches_the_optimizer'),
    Guard('SAELens export: normalize_activations is the SAE\'s (layer_norm)', 'autoencoder.py::saelens_cfg',
          "'normalize_activations': sae.cfg.normalize,", "'normalize_activations': 'none',",
          f'{SLF}::test_our_export_read_by_saelens_formulas'),
    Guard('SAELens load: normalize_activations read back', 'autoencoder.py::load_saelens',
          "normalize = cfg.get('normalize_activations') or 'none'", "normalize = 'none'",
          f'{SLF}::test_our_export_read_by_saelens_formulas'),
    Guard('SAELens export: topk\'s k also in activation_fn_kwargs (SAELens 5.x)', 'autoencoder.py::TopK.saelens_fields',
          "activation_fn_kwargs={'k': cfg.k}", "activation_fn_kwargs={'k': 32}",
          f'{SLF}::test_our_export_read_by_saelens_formulas'),
    Guard('SAELens load: decoder-norm rescaling folded into W_enc', 'autoencoder.py::load_saelens',
          'sae.W_enc.mul_(norms[:, None])', 'pass',
          f'{SLF}::test_saelens_topk_checkpoint_with_decoder_norm_rescaling_loads_as_its_function'),
    Guard('SAELens load: decoder-norm rescaling folded into b_enc', 'autoencoder.py::load_saelens',
          'sae.b_enc.mul_(norms)', 'pass',
          f'{SLF}::test_saelens_topk_checkpoint_with_decoder_norm_rescaling_loads_as_its_function'),
    Guard('SAELens load: decoder-norm rescaling folded into W_dec', 'autoencoder.py::load_saelens',
          'sae.W_dec.div_(norms)', 'pass',
          f'{SLF}::test_saelens_topk_checkpoint_with_decoder_norm_rescaling_loads_as_its_function'),
    Guard('SAELens load: a batchtopk training checkpoint\'s topk_threshold is θ',
          'autoencoder.py::BatchTopK.load_tensors_',
          "sd.get('topk_threshold', torch.zeros(()))", 'torch.zeros(())',
          f'{SLF}::test_saelens_batchtopk_checkpoint_loads_its_threshold'),
    Guard('SAELens load: per-feature thresholds are refused as one batchtopk θ',
          'autoencoder.py::BatchTopK.load_tensors_',
          'if theta.numel() > 1 and not bool((theta == theta.flatten()[0]).all()):', 'if False:',
          f'{SLF}::test_per_feature_thresholds_are_not_one_batchtopk_threshold'),
    Guard('SAELens load: a SAELens SAE is the kind of its architecture and b_dec use',
          'autoencoder.py::_kind_of_saelens',
          'return next((kind for kind in kinds if kind.pre_bias == pre_bias), kinds[0])', 'return kinds[0]',
          f'{SLF}::test_saelens_standard_sae_without_pre_bias_loads_as_the_kind_without_it'),
]
# every browser guard whose mutation hands a string to innerHTML: also caught by reading the scripts (no Chromium)
GUARDS += [g._replace(element=f'{g.element} (read without a browser)', test=PAGES) for g in list(GUARDS)
           if 'innerHTML' in g.new and 'innerHTML' not in g.old and g.test != PAGES]

# ---------------------------------------------------------------------------- where each guard's snippet is now
class Stale(Exception):
    """A guard's snippet is not once in its anchor, nor in a def of the anchor's name elsewhere (one-line reason)."""


@lru_cache(maxsize=None)
def source_files(root: str = REPO) -> tuple[str, ...]:
    """The files a moved def is looked for in: tracked and untracked (not ignored), but the tests and this list."""
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=root, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    return tuple(f for f in files if not f.startswith('tests/') and f != 'tools/guards.py')


@lru_cache(maxsize=None)
def read(path: str) -> str | None:
    """The text of a file, None if there is none (read once per process)."""
    try:
        with open(path, encoding='utf-8') as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


@lru_cache(maxsize=None)
def def_spans(path: str) -> tuple[tuple[str, int, int], ...] | None:
    """(qualname, start, end) of every def and class of a Python file as character offsets, from the line of its first
    decorator to the end of its last line; nested ones are 'Class.method', 'outer.inner'. None if it does not parse."""
    src = read(path)
    try:
        tree = ast.parse(src, path)
    except (SyntaxError, TypeError):  # TypeError: no file
        return None
    line_start = [0] + [m.end() for m in re.finditer('\n', src)] + [len(src)]
    spans = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                spans.append((prefix + child.name, line_start[first - 1], line_start[child.end_lineno]))
                visit(child, f'{prefix}{child.name}.')
            else:
                visit(child, prefix)

    visit(tree, '')
    return tuple(spans)


def holder(path: str, old: str) -> str | None:
    """The qualname of the innermost def/class holding the snippet, '' if it is outside every def (or the file is not
    Python); None if the snippet is not once in the file, straddles a def's boundary or the file does not parse."""
    src = read(path)
    if src is None or src.count(old) != 1:
        return None
    if not path.endswith('.py'):
        return ''
    spans = def_spans(path)
    if spans is None:
        return None
    a = src.index(old)
    b = a + len(old)
    inside = [(s, name) for name, s, e in spans if s <= a and b <= e]
    if inside:
        return max(inside)[1]
    return None if any(s < b and a < e for _, s, e in spans) else ''


def holds(path: str, qualname: str, old: str) -> bool:
    """Whether the file holds the snippet exactly once, inside a def or class named qualname ('' = outside any def)."""
    src, spans = read(path), def_spans(path) if path.endswith('.py') else ()
    if src is None or spans is None or src.count(old) != 1:
        return False
    if not qualname:
        return holder(path, old) == ''
    a = src.index(old)
    return any(name == qualname and s <= a and a + len(old) <= e for name, s, e in spans)


def has_def(path: str, qualname: str) -> bool:
    """Whether the file is there and has a def or class named qualname (any file has the top level '')."""
    if read(path) is None:
        return False
    spans = def_spans(path) if path.endswith('.py') else ()
    return not qualname or any(name == qualname for name, _, _ in spans or ())


def where_now(root: str, old: str) -> str:
    """Where the snippet is in the repo, as anchors: a hint for a stale guard."""
    at = [f if not (q := holder(os.path.join(root, f), old)) else f'{f}::{q}' for f in source_files(root)
          if old in (read(os.path.join(root, f)) or '')]
    return f"it is in {', '.join(at[:3])}{' ...' if len(at) > 3 else ''}" if at else 'it is nowhere in the repo'


def locate(g: Guard, root: str = REPO) -> str:
    """The file that holds g's snippet now: the anchor's file; or, when the anchor's def (or file) is gone from it, the
    one other file with a def of that qualname holding the snippet once (the def moved). Else raises Stale."""
    path, _, qualname = g.anchor.partition('::')
    if holds(os.path.join(root, path), qualname, g.old):
        return path
    if not has_def(os.path.join(root, path), qualname):
        ext = os.path.splitext(path)[1]
        found = [f for f in source_files(root) if f.endswith(ext) and f != path
                 and holds(os.path.join(root, f), qualname, g.old)]
        if len(found) == 1:
            return found[0]
    raise Stale(f"the snippet is not once in {g.anchor}; {where_now(root, g.old)}")


def moved_line(g: Guard, now: str) -> str:
    path, _, qualname = g.anchor.partition('::')
    return f"moved: {g.element}: {qualname or 'its top-level code'} is now in {now} (was {path})"


def problems(g: Guard, root: str = REPO) -> list[str]:
    """One line per thing to fix in g: its anchor moved or stale, its test gone, a mutation that changes nothing."""
    out = []
    try:
        now = locate(g, root)
        if now != g.anchor.partition('::')[0]:
            out.append(moved_line(g, now))
    except Stale as e:
        out.append(f"STALE: {g.element}: {e}")
    path, _, name = g.test.partition('::')
    test_src = read(os.path.join(root, path))
    if test_src is None or name and not re.search(rf"def {re.escape(name.split('[')[0])}\(", test_src):
        out.append(f"STALE: {g.element}: no test {g.test}")
    if g.old == g.new:
        out.append(f"STALE: {g.element}: the mutation changes nothing")
    return out


def check(guards: list[Guard]) -> int:
    """Print what to fix in the list (no test is run): exit code 1 if anything."""
    found = [problems(g) for g in guards]
    lines = [line for p in found for line in p]
    n_moved = sum(line.startswith('moved:') for line in lines)
    for line in lines:
        print(line)
    print(f"{sum(not p for p in found)}/{len(guards)} guards in place; {n_moved} moved, {len(lines) - n_moved} stale")
    return 1 if lines else 0


# ---------------------------------------------------------------------------- the mutation run
def copy_repo(dst: str) -> None:
    """The tracked and untracked (not ignored) files of the checkout, as they are now."""
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for f in files:
        if os.path.isfile(os.path.join(REPO, f)):
            os.makedirs(os.path.dirname(os.path.join(dst, f)) or dst, exist_ok=True)
            shutil.copy2(os.path.join(REPO, f), os.path.join(dst, f))


def mutant_survives(copy: str, g: Guard, path: str) -> bool | None:
    """Break g in the copy (<copy>/repo), run its test, restore the file: True if the test still passes, None if the
    snippet is not once in the copy's file."""
    file = os.path.join(copy, 'repo', path)
    src = open(file, encoding='utf-8').read()
    if src.count(g.old) != 1:
        return None
    with open(file, 'w', encoding='utf-8') as f:
        f.write(src.replace(g.old, g.new))
    try:
        p = subprocess.run([sys.executable, '-m', 'pytest', '-x', '-q', '-p', 'no:cacheprovider',
                            f"--basetemp={os.path.join(copy, 'tmp')}", g.test],
                           cwd=os.path.join(copy, 'repo'), capture_output=True, text=True,
                           env={**os.environ, 'OMP_NUM_THREADS': '1', 'WANDB_MODE': 'disabled'})
    finally:
        with open(file, 'w', encoding='utf-8') as f:
            f.write(src)
    return p.returncode in (0, 5)  # 5: no test collected, which guards nothing


def run(chosen: list[Guard], jobs: int) -> int:
    """Each guard's mutation and test, `jobs` at a time, each in its own copy of the repo: exit code 1 if a broken
    element is not caught (or its snippet is stale)."""
    t0, n, done, missed, places = time.time(), len(chosen), 0, set(), {}
    for i, g in enumerate(chosen):
        try:
            places[i] = locate(g)
            if places[i] != g.anchor.partition('::')[0]:
                print(moved_line(g, places[i]), flush=True)
        except Stale as e:
            done += 1
            missed.add(i)
            print(f"[{done}/{n}] STALE   {g.element}: {e}", flush=True)
    with tempfile.TemporaryDirectory(prefix='guards-') as tmp:
        copies, n_copies = queue.Queue(), max(1, min(jobs, len(places)))
        for j in range(n_copies):
            copy_repo(os.path.join(tmp, str(j), 'repo'))
            copies.put(os.path.join(tmp, str(j)))

        def mutate(i: int) -> tuple[bool | None, float]:
            copy, t = copies.get(), time.time()
            try:
                return mutant_survives(copy, chosen[i], places[i]), time.time() - t
            finally:
                copies.put(copy)

        with ThreadPoolExecutor(n_copies) as pool:
            futures = {pool.submit(mutate, i): i for i in places}
            for future in as_completed(futures):
                i, (survives, seconds) = futures[future], future.result()
                done += 1
                if survives is not False:
                    missed.add(i)
                verdict = 'caught ' if survives is False else 'MISSED ' if survives else 'STALE  '
                print(f"[{done}/{n}] {verdict} {chosen[i].element} ({seconds:.0f}s)", flush=True)
    print(f"{n - len(missed)}/{n} broken elements caught by their tests in {time.time() - t0:.0f}s")
    for i in sorted(missed):
        print(f"not caught: {chosen[i].element} ({chosen[i].anchor}; {chosen[i].test})")
    return 1 if missed else 0


def markdown() -> str:
    lines = ['| element | code | test that fails when it is broken |', '| --- | --- | --- |']
    for g in GUARDS:
        test = g.test.replace('tests/', '')
        lines.append(f"| {g.element} | `{g.anchor}` | `{test}` |")
    return '\n'.join(lines)


def main(argv: list[str]) -> int:
    if '--markdown' in argv:
        print(markdown())
        return 0
    jobs, words = 1, []
    for i, a in enumerate(argv):
        if a.startswith('--jobs'):
            value = a.partition('=')[2] or (argv[i + 1] if i + 1 < len(argv) else '')
            if not value.isdigit() or int(value) < 1:
                print(f"--jobs takes a number of guards run at once (>= 1), not {value!r}", file=sys.stderr)
                return 2
            jobs = int(value)
        elif a.startswith('-') and a not in ('--check', '--markdown'):
            print(f"unknown option {a} (options: --check, --markdown, --jobs N)", file=sys.stderr)
            return 2
        elif not a.startswith('-') and not (i > 0 and argv[i - 1] == '--jobs'):
            words.append(a)
    chosen = [g for g in GUARDS if not words or any(w.lower() in g.element.lower() for w in words)]
    return check(chosen) if '--check' in argv else run(chosen, jobs)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
