"""
Pretrain the transformer whose activations the SAE will decompose (nanoGPT's train.py, with hook sites).

CPU demo (embedded corpus, a few minutes on 2 cores):
    python data/pystdlib/prepare.py
    python train_transformer.py config/demo/transformer.py
Seed reproduction (OpenWebText, gpt2 tokenizer), one GPU or a node with 8:
    python data/openwebtext/prepare.py
    python train_transformer.py config/transformer.py
    torchrun --standalone --nproc_per_node=8 train_transformer.py config/transformer.py
Resume after a crash: add --init_from=resume. Any key can be overridden: --batch_size=32; --help lists them.

Writes <out_dir>/transformer/ckpt.pt (best val loss) and last.pt (latest, for resuming). A NaN/inf loss (training
or evaluation) stops the run with one line before anything is saved: both files keep the last good model.
"""
import math
import os
import time

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from monosemanticity.common import (autocast, data_dir_of, ddp_cleanup, ddp_setup, die, exit_on_user_error, get_batch,
                                    get_device, load_checkpoint, load_data_meta, matmul_flops, max_rank_divergence,
                                    next_command, print0, progress, resolve_dtype, save_checkpoint)
from model import GPT, GPTConfig
from configurator import configure

exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2

# -----------------------------------------------------------------------------
# I/O
out_dir = 'out'  # the run folder; the checkpoint goes to <out_dir>/transformer/
eval_interval = 2000  # evaluate train/val loss (and save) every this many iterations
log_interval = 1  # update the progress line every this many iterations
eval_iters = 200  # batches per loss estimate
eval_only = False  # if True, evaluate once and exit
always_save_checkpoint = True  # save last.pt at every eval (ckpt.pt only when val loss improves)
init_from = 'scratch'  # 'scratch' or 'resume' (from <out_dir>/transformer/last.pt)
# wandb logging
wandb_log = False  # works offline with WANDB_MODE=offline
wandb_project = 'monosemanticity'
wandb_run_name = 'transformer'
# data
dataset = 'openwebtext'  # a folder name under data/ or a path to a prepared dataset
gradient_accumulation_steps = 5 * 8  # used to simulate larger batch sizes (divided by the number of ranks)
batch_size = 12  # micro-batch size per rank
block_size = 1024
# model
n_layer = 1
n_head = 4
n_embd = 128
dropout = 0.0  # for pretraining 0 is good, for finetuning try 0.1+
bias = True  # bias inside LayerNorm and Linear layers
activation = 'gelu'  # MLP nonlinearity: 'gelu' (the seed) or 'relu' (Anthropic)
# adamw optimizer
learning_rate = 6e-4  # max learning rate
max_iters = 200000  # total number of training iterations
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0  # clip gradients at this value, or disable if == 0.0
# learning rate decay settings
decay_lr = True  # whether to decay the learning rate
warmup_iters = 2000  # how many steps to warm up for
lr_decay_iters = 200000  # should be ~= max_iters per Chinchilla
min_lr = 6e-5  # minimum learning rate, should be ~= learning_rate/10 per Chinchilla
# system
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'auto' (bfloat16/float16 on cuda, float32 elsewhere), 'float32', 'bfloat16', 'float16'
compile = False  # torch.compile the model (CUDA only; ignored on CPU)
seed = 1337
# -----------------------------------------------------------------------------
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)
# -----------------------------------------------------------------------------

device = get_device(device)
ddp, ddp_rank, ddp_local_rank, ddp_world_size, device = ddp_setup(device)
master_process = ddp_rank == 0
if gradient_accumulation_steps < ddp_world_size:
    print0(f"note: gradient_accumulation_steps={gradient_accumulation_steps} < {ddp_world_size} ranks: each rank "
           f"does 1 micro-step, so an iteration covers {ddp_world_size / gradient_accumulation_steps:g}x the tokens")
    gradient_accumulation_steps = ddp_world_size
if gradient_accumulation_steps % ddp_world_size != 0:
    die(f"gradient_accumulation_steps={gradient_accumulation_steps} is not divisible by the "
        f"{ddp_world_size} ranks: pick a multiple of {ddp_world_size}")
gradient_accumulation_steps //= ddp_world_size
dtype = resolve_dtype(dtype, device)
device_type = 'cuda' if 'cuda' in device else 'cpu'
if compile and device_type != 'cuda':
    print0("note: compile=True is ignored off CUDA (compiling on CPU costs more time than it saves here)")
    compile = False
tokens_per_iter = gradient_accumulation_steps * ddp_world_size * batch_size * block_size
ckpt_dir = os.path.join(out_dir, 'transformer')
if master_process:
    os.makedirs(ckpt_dir, exist_ok=True)
torch.manual_seed(seed)  # the same init on every rank
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
ctx = autocast(device, dtype)

data_dir = data_dir_of(dataset)
meta = load_data_meta(data_dir)
token_dtype = meta['dtype']
batch_gen = torch.Generator().manual_seed(seed + ddp_rank)  # each rank its own batches


def batch(split: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return get_batch(data_dir, split, token_dtype, batch_size, block_size, device, gen)


# model init
model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                  vocab_size=meta['vocab_size'], dropout=dropout, activation=activation)
iter_num, best_val_loss, checkpoint = 0, 1e9, None
if init_from == 'scratch':
    print0(f"training from scratch: {data_dir} (vocab {meta['vocab_size']}), {tokens_per_iter:,} tokens/iter")
    model = GPT(GPTConfig(**model_args))
elif init_from == 'resume':
    path = os.path.join(ckpt_dir, 'last.pt')
    checkpoint = load_checkpoint(path, device, hint="nothing to resume: start with --init_from=scratch")
    for k in ['n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'vocab_size', 'activation']:
        model_args[k] = checkpoint['model_args'][k]  # the architecture comes from the checkpoint
    model = GPT(GPTConfig(**model_args))
    model.load_state_dict({k.removeprefix('_orig_mod.'): v for k, v in checkpoint['model'].items()})
    iter_num, best_val_loss = checkpoint['iter_num'], checkpoint['best_val_loss']
    if ddp_rank < len(checkpoint['batch_rng']):
        batch_gen.set_state(checkpoint['batch_rng'][ddp_rank])
    print0(f"resuming from {path} at iter {iter_num} (best val loss {best_val_loss:.4f})")
else:
    die(f"init_from='{init_from}' is not 'scratch' or 'resume'")
model.to(device)
raw_model = model  # saved from here: no DDP 'module.' or compile '_orig_mod.' prefixes in checkpoints

scaler = torch.amp.GradScaler('cuda', enabled=(dtype == 'float16' and device_type == 'cuda'))
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type)
if checkpoint is not None:
    optimizer.load_state_dict(checkpoint['optimizer'])
checkpoint = None  # free up memory

if compile:
    print0("compiling the model... (takes a ~minute)")
    model = torch.compile(model)
if ddp:
    model = DDP(model, device_ids=[ddp_local_rank] if device_type == 'cuda' else None)


@torch.no_grad()
def estimate_loss() -> dict[str, float]:
    """Mean loss over eval_iters batches per split; the same batches at every eval (a fixed generator)."""
    out = {}
    raw_model.eval()
    for split in ['train', 'val']:
        gen = torch.Generator().manual_seed(seed + 10_000 * (1 + ddp_rank))
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            X, Y = batch(split, gen)
            with ctx:
                _, loss = raw_model(X, Y)
            losses[k] = loss.item()
        mean = losses.mean().to(device)
        if ddp:
            torch.distributed.all_reduce(mean)
            mean /= ddp_world_size
        out[split] = mean.item()
    raw_model.train()
    return out


def get_lr(it: int) -> float:
    """Linear warmup, then cosine decay to min_lr at lr_decay_iters, then min_lr."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # coeff ranges 0..1
    return min_lr + coeff * (learning_rate - min_lr)


def stop_nonfinite(what: str) -> None:
    """One line for a non-finite loss, then exit 2 without saving: the checkpoints on disk stay the good ones."""
    bar.leave = False
    bar.close()  # erase the progress line: the error is the one line left on the terminal
    on_disk = (f"{os.path.join(ckpt_dir, 'last.pt')} (iteration {saved_iter}) is untouched" if saved_iter is not None
               else "this run saved no checkpoint")
    again = ", then rerun (--init_from=resume continues from last.pt)" if saved_iter is not None else ", then rerun"
    die(f"{what}{f' on rank {ddp_rank}' if ddp else ''}: stopped before saving; {on_disk}; "
        f"lower --learning_rate (now {learning_rate:g}){again}")


def save(name: str, complete: bool) -> None:
    # the batch generator's state before the prefetched batch: a resumed run draws that batch again
    batch_rngs = [prefetch_state]
    if ddp:
        batch_rngs = [torch.empty(0, dtype=torch.uint8) for _ in range(ddp_world_size)]
        torch.distributed.all_gather_object(batch_rngs, prefetch_state)
    if master_process:
        save_checkpoint({'model': raw_model.state_dict(), 'optimizer': optimizer.state_dict(),
                         'model_args': model_args, 'iter_num': iter_num, 'best_val_loss': best_val_loss,
                         'val_loss': last_val, 'config': config, 'batch_rng': batch_rngs, 'complete': complete,
                         'data': {'dataset': data_dir, 'tokenizer': meta.get('tokenizer'),
                                  'vocab_size': meta['vocab_size']}},
                        os.path.join(ckpt_dir, name))


if wandb_log and master_process:
    import wandb
    wandb.init(project=wandb_project, name=wandb_run_name, config=config)

peak_flops = matmul_flops(device, dtype)
print0(f"{raw_model.get_num_params() / 1e6:.2f}M parameters on {device} ({dtype}, {ddp_world_size} rank(s)); "
       f"measured matmul peak {peak_flops / 1e9:.0f} GFLOP/s (MFU is relative to it)")
prefetch_state = batch_gen.get_state()
X, Y = batch('train', batch_gen)
t0 = time.time()
t_start, iter_start = t0, iter_num
running_mfu, last_val = -1.0, float('nan')
saved_iter = iter_num if init_from == 'resume' else None  # the iteration last.pt holds (None: nothing saved yet)
tok_per_s = 0.0
bar = progress(total=max_iters, initial=iter_num, desc='train', unit='it', disable=not master_process)
while True:
    lr = get_lr(iter_num)
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr

    last_iter = iter_num >= max_iters
    if (iter_num % eval_interval == 0 and iter_num > iter_start) or last_iter or eval_only:
        losses = estimate_loss()
        last_val = losses['val']
        bar.write(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}") \
            if master_process else None
        if wandb_log and master_process:
            wandb.log({'iter': iter_num, 'train/loss': losses['train'], 'val/loss': losses['val'], 'lr': lr,
                       'mfu': running_mfu * 100, 'tokens_per_s': tok_per_s})
        if eval_only:
            break
        for split in ('train', 'val'):  # a model that went non-finite is never saved
            if not math.isfinite(losses[split]):
                stop_nonfinite(f"the {split} loss is {losses[split]} at the evaluation of iteration {iter_num}")
        improved = losses['val'] < best_val_loss
        if improved:
            best_val_loss = losses['val']
        if improved:
            save('ckpt.pt', complete=last_iter)
        if always_save_checkpoint or last_iter:
            save('last.pt', complete=last_iter)
            saved_iter = iter_num
        if last_iter:
            break

    # forward backward update, with optional gradient accumulation to simulate larger batch size
    micro_losses = []
    for micro_step in range(gradient_accumulation_steps):
        if ddp:  # sync gradients only at the last micro step
            model.require_backward_grad_sync = (micro_step == gradient_accumulation_steps - 1)
        with ctx:
            logits, loss = model(X, Y)
            loss = loss / gradient_accumulation_steps
        micro_losses.append(loss.detach())
        prefetch_state = batch_gen.get_state()
        X, Y = batch('train', batch_gen)  # prefetch the next batch while the backward pass runs on GPU
        scaler.scale(loss).backward()
    # one device sync per iteration (also the logged loss): stop at the first non-finite loss, before the update.
    # Only the loss: with fp16's GradScaler, inf/NaN gradients are normal (the scaler skips that step).
    micro_loss = [v * gradient_accumulation_steps for v in torch.stack(micro_losses).tolist()]
    if not all(map(math.isfinite, micro_loss)):
        m = next(i for i, v in enumerate(micro_loss) if not math.isfinite(v))
        step = f" (micro-step {m + 1} of {gradient_accumulation_steps})" if gradient_accumulation_steps > 1 else ''
        stop_nonfinite(f"the training loss is {micro_loss[m]} at iteration {iter_num}{step}")
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)

    t1 = time.time()
    dt, t0 = t1 - t0, t1
    iter_num += 1
    bar.update(1)
    if iter_num % log_interval == 0 and master_process:
        lossf = sum(micro_loss) / gradient_accumulation_steps  # the iteration's mean loss
        if iter_num - iter_start >= 5:  # let the training loop settle a bit
            mfu = raw_model.estimate_mfu(batch_size * gradient_accumulation_steps * ddp_world_size, dt, peak_flops)
            running_mfu = mfu if running_mfu == -1.0 else 0.9 * running_mfu + 0.1 * mfu
        tok_per_s = tokens_per_iter * (iter_num - iter_start) / (t1 - t_start)
        bar.set_postfix(loss=f'{lossf:.3f}', lr=f'{lr:.1e}', tok_s=f'{tok_per_s:,.0f}',
                        mfu=f'{running_mfu * 100:.1f}%', refresh=False)
bar.close()
if master_process and not eval_only:
    elapsed = time.time() - t_start
    print(f"done: {iter_num} iters, {tokens_per_iter * (iter_num - iter_start):,} tokens in {elapsed:.0f}s "
          f"({tok_per_s:,.0f} tokens/s, MFU {running_mfu * 100:.1f}% of measured peak); "
          f"best val loss {best_val_loss:.4f}")
    print(f"saved {os.path.join(ckpt_dir, 'ckpt.pt')} (best) and last.pt")
    print(f"next: {next_command('generate_activations.py', 'activations', out_dir)}")
if ddp:  # check that DDP kept every rank's parameters identical
    print0(f"ranks in sync: max |parameter difference| vs rank 0 = {max_rank_divergence(raw_model):g}")
if wandb_log and master_process:
    wandb.finish()
del model  # the DDP wrapper holds the process group: release it before destroying the group
ddp_cleanup(ddp)
