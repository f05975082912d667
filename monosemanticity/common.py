"""Shared helpers for the pipeline scripts: errors, device/dtype, DDP, printing, progress, seeding, atomic files,
token data.

Errors: library code raises UserError (bad input the user can fix: its message is one line saying what is wrong and
what to do); a script calls exit_on_user_error() once at the top, which turns an uncaught UserError into that line
on stderr and exit code 2 (die() does the same from a script's own checks). Other exceptions keep their traceback.
"""
import contextlib
import gc
import hashlib
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo (this file is in monosemanticity/)
PTDTYPE = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


class UserError(Exception):
    """Bad input or a missing file that the user can fix; str(e) is the one line that says what to do."""


def die(msg: str, code: int = 2) -> None:
    """Scripts only: print one line saying what is wrong (and what to do) and exit non-zero."""
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def exit_on_user_error() -> None:
    """A script's first step: an uncaught UserError ends it as die() would (one `error:` line, exit code 2, atexit
    handlers run) instead of with a traceback. Raising SystemExit inside sys.excepthook is how CPython lets a hook
    choose the exit code (pythonrun.c handles it like an uncaught SystemExit)."""
    def hook(exc_type, exc, tb):
        if issubclass(exc_type, UserError):
            sys.stdout.flush()
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2)
        sys.__excepthook__(exc_type, exc, tb)
    sys.excepthook = hook


# ----------------------------------------------------------------------------- device, dtype, DDP

def get_device(device: str = 'auto') -> str:
    """'auto' -> cuda > mps > cpu; anything else is returned as given."""
    if device != 'auto':
        return device
    if torch.cuda.is_available():
        return 'cuda'
    if getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available():
        return 'mps'
    return 'cpu'


def resolve_dtype(dtype: str, device: str) -> str:
    """'auto' -> bfloat16 where the GPU supports it, float16 on older GPUs, float32 on cpu/mps."""
    if dtype != 'auto':
        if dtype not in PTDTYPE:
            raise UserError(f"dtype '{dtype}' is not one of {sorted(PTDTYPE)} or 'auto'")
        return dtype
    if device.startswith('cuda'):
        return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    return 'float32'


def autocast(device: str, dtype: str):
    """Autocast context for `dtype` ('float32' -> no-op)."""
    if dtype == 'float32':
        return contextlib.nullcontext()
    device_type = 'cuda' if device.startswith('cuda') else 'cpu' if device == 'cpu' else device
    return torch.autocast(device_type=device_type, dtype=PTDTYPE[dtype])


def ddp_setup(device: str) -> tuple[bool, int, int, int, str]:
    """Init torch.distributed from torchrun's env. Returns (ddp, rank, local_rank, world_size, device)."""
    if int(os.environ.get('RANK', -1)) == -1:
        return False, 0, 0, 1, device
    rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
    world_size = int(os.environ['WORLD_SIZE'])
    # Import it while group.WORLD is still None: its functions take `group=group.WORLD` as a default, so imported
    # after init (torch.optim imports torch._dynamo, which imports it) they would hold the group for the life of the
    # interpreter and keep gloo's worker threads running into its teardown (see ddp_cleanup).
    import torch.distributed.nn  # noqa: F401
    if device.startswith('cuda'):
        device = f'cuda:{local_rank}'
        torch.cuda.set_device(device)
        dist.init_process_group(backend='nccl')
    else:
        dist.init_process_group(backend='gloo')
    return True, rank, local_rank, world_size, device


_GLOO_WORKER_THREAD = 'pt_gloo_runloop'  # the name c10d::ProcessGroupGloo gives its worker threads


def _gloo_workers_alive() -> bool:
    """True while a ProcessGroupGloo worker thread runs in this process (read from /proc; False where there is none).
    A thread being joined can stay listed for a moment after its join returned: look again for up to a second."""
    for _ in range(100):
        try:
            tids = os.listdir('/proc/self/task')
        except OSError:
            return False
        names = []
        for tid in tids:
            try:
                with open(f'/proc/self/task/{tid}/comm') as f:
                    names.append(f.read().strip())
            except OSError:  # the thread has just ended
                pass
        if _GLOO_WORKER_THREAD not in names:
            return False
        time.sleep(0.01)
    return True


def ddp_cleanup(ddp: bool) -> None:
    """A script's last step under DDP, once all its work and outputs are done: barrier, destroy the process group, and
    check that it is really gone (its worker threads joined) before Python starts its own teardown.

    Why (gdb on the core dumps of aborted torch 2.13 gloo runs, all alike): a gloo worker thread drops its references
    to a collective (and a barrier's work, to the collectives before it) only after the caller was told it completed,
    and dropping a tensor that Python also holds takes the GIL. If that happens once interpreter finalization began,
    CPython ends the thread with pthread_exit, whose forced unwind meets a noexcept C++ frame: ProcessGroupGloo::runLoop
    -> ~AsyncAllreduceWork / ~AsyncBroadcastWork -> TensorImpl::decref_pyobject -> take_gil -> PyThread_exit_thread ->
    std::terminate ('terminate called without an active exception', SIGABRT) while the main thread is in Py_FinalizeEx.
    ~ProcessGroupGloo joins those threads (with the GIL released), but destroy_process_group() only drops torch's own
    references to the group: any other one (a live DDP wrapper, torch.distributed.nn.functional's defaults, see
    ddp_setup) kept the group and its threads alive into interpreter teardown. So the group must be freed here; if
    something still holds it, the work is done: end the process now, without that teardown, and say so on stderr."""
    if not ddp:
        return
    dist.barrier()
    dist.destroy_process_group()
    gc.collect()  # a group held only by a reference cycle
    if _gloo_workers_alive():
        print("warning: the process group is still referenced after destroy_process_group(), so gloo's worker threads "
              "would outlive Python (a teardown abort risk): exiting now, all work done", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(0)


@torch.no_grad()
def max_rank_divergence(module: torch.nn.Module) -> float:
    """Under DDP: the largest |parameter - rank 0's parameter| over all ranks (0.0 when they are in sync)."""
    max_diff = torch.zeros((), device=next(module.parameters()).device)
    for p in module.parameters():
        ref = p.detach().clone()
        dist.broadcast(ref, 0)
        max_diff = torch.maximum(max_diff, (p.detach() - ref).abs().max())
    dist.all_reduce(max_diff, op=dist.ReduceOp.MAX)
    return max_diff.item()


def is_master() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def print0(*args, **kwargs) -> None:
    """print on rank 0 only."""
    if is_master():
        print(*args, **kwargs, flush=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python/numpy/torch RNG states as tensors and plain lists (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    return {'python': list(random.getstate()[1]), 'python_pos': random.getstate()[2],
            'numpy': torch.from_numpy(np_state[1].astype(np.int64)), 'numpy_pos': int(np_state[2]),
            'torch': torch.get_rng_state()}


def set_rng_state(s: dict) -> None:
    random.setstate((3, tuple(s['python']), s['python_pos']))
    np.random.set_state(('MT19937', s['numpy'].numpy().astype(np.uint32), s['numpy_pos'], 0, 0.0))
    torch.set_rng_state(s['torch'])


def file_sha256(path: str) -> str:
    """The hex SHA-256 of a file, read in 16 MB blocks (label_concepts.py's fingerprint of <split>.bin)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- atomic files

@contextlib.contextmanager
def atomic_file(path: str, mode: str = 'wb', **open_kwargs):
    """Open a temp name next to `path` for writing; on a clean exit flush, fsync and rename it to `path`, on an
    error delete it: readers see the old file or the complete new one, never a partial one. The one place for
    temp + fsync + rename."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_file(path, 'wb') as f:
        f.write(data)


def atomic_write_json(path: str, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + '\n').encode())


def save_checkpoint(obj: dict, path: str) -> None:
    """torch.save, atomically (atomic_file)."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with atomic_file(path, 'wb') as f:
        torch.save(obj, f)


def load_checkpoint(path: str, map_location='cpu', hint: str = '') -> dict:
    """torch.load(weights_only=True); UserError if the file is missing or unreadable."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found" + (f": {hint}" if hint else ''))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"checkpoint {path} could not be read ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]})") from None


def read_json(path: str, hint: str = '') -> dict:
    """A JSON file's content; UserError (naming `hint`, what to do) if it is missing or not valid JSON."""
    if not os.path.isfile(path):
        raise UserError(f"{path} not found" + (f": {hint}" if hint else ''))
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e})" + (f": {hint}" if hint else '')) from None


def read_site_data(path: str):
    """The JSON of a feature-browser data file: `window.X=<JSON>;` or `loadFeatures(<JSON>);` (docs/browser.md)."""
    with open(path, encoding='ascii') as f:
        text = f.read().strip()
    if text.startswith('loadFeatures('):
        return json.loads(text[len('loadFeatures('):-2])
    return json.loads(text.split('=', 1)[1][:-1])


# ----------------------------------------------------------------------------- token data

# the fields every dataset's meta.json has (written by tokenizer.write_meta, read by load_data_meta)
DATA_META_KEYS = ('vocab_size', 'dtype', 'eot_token', 'tokenizer', 'tokenizer_file', 'corpus', 'train_tokens',
                  'val_tokens')


def data_dir_of(dataset: str) -> str:
    """A dataset name ('pystdlib') means data/<name>/ in the repo; a path is used as is."""
    if os.sep in dataset or os.path.isabs(dataset) or dataset.startswith('.'):
        return dataset
    return os.path.join(REPO_ROOT, 'data', dataset)


def prepare_hint(data_dir: str) -> str:
    name = os.path.basename(os.path.normpath(data_dir))
    script = os.path.join('data', name, 'prepare.py')
    if os.path.isfile(os.path.join(REPO_ROOT, script)):
        return f"run `python {script}` first"
    return f"run a data/<ds>/prepare.py with --out_dir={data_dir} first"


def load_data_meta(data_dir: str, need_bins: bool = True) -> dict:
    """The one reader of a prepared dataset's meta.json: checks it holds DATA_META_KEYS and (need_bins) that
    train.bin and val.bin exist; UserError naming the prepare command otherwise."""
    path = os.path.join(data_dir, 'meta.json')
    meta = read_json(path, prepare_hint(data_dir))
    missing = [k for k in DATA_META_KEYS if k not in meta] if isinstance(meta, dict) else list(DATA_META_KEYS)
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: {prepare_hint(data_dir)}")
    for split in ('train', 'val') if need_bins else ():
        if not os.path.isfile(os.path.join(data_dir, f'{split}.bin')):
            raise UserError(f"{os.path.join(data_dir, split + '.bin')} not found: {prepare_hint(data_dir)}")
    return meta


def token_memmap(data_dir: str, split: str, dtype: str) -> np.memmap:
    """The token file of a split, memory-mapped. Re-create per use: a long-lived memmap leaks (nanoGPT #287)."""
    return np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.dtype(dtype), mode='r')


def token_windows(tokens: np.ndarray, starts, length: int) -> torch.Tensor:
    """The one place token windows are cut: tokens[s:s+length] for each start -> (len(starts), length) int64 (CPU).
    Cut length+1 to get inputs and next-token targets from one window."""
    return torch.from_numpy(np.stack([tokens[s:s + length].astype(np.int64) for s in starts]))


def get_batch(data_dir: str, split: str, dtype: str, batch_size: int, block_size: int, device: str,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (x, y) windows of block_size tokens: x (B, T), y (B, T) shifted by one, int64 on device."""
    data = token_memmap(data_dir, split, dtype)
    if len(data) <= block_size + 1:
        raise UserError(f"{split}.bin in {data_dir} has {len(data)} tokens, fewer than block_size+1 = "
                        f"{block_size + 1}")
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator).tolist()
    xy = token_windows(data, ix, block_size + 1)
    if device.startswith('cuda'):
        xy = xy.pin_memory().to(device, non_blocking=True)
    else:
        xy = xy.to(device)
    return xy[:, :-1].contiguous(), xy[:, 1:].contiguous()


# ----------------------------------------------------------------------------- progress

def progress(iterable=None, total: int | None = None, desc: str = '', **kwargs):
    """tqdm, except when stderr is not a terminal (a log file, CI): then a plain line every 5% of `total` (or
    every 30 s when the total is unknown) instead of the `\r` updates that fill a log with megabytes."""
    from tqdm import tqdm
    total = total if total is not None else (len(iterable) if hasattr(iterable, '__len__') else None)
    if sys.stderr.isatty() or kwargs.get('disable'):
        return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, **kwargs)
    if kwargs.pop('leave', True) is False:  # a transient bar (e.g. each evaluation's): nothing worth keeping in a log
        kwargs['disable'] = True
    initial = kwargs.get('initial', 0)
    every = dict(miniters=max(1, math.ceil((total - initial) / 20)), mininterval=0) if total else \
        dict(mininterval=30)
    return tqdm(iterable, total=total, desc=desc, file=_LineWriter(sys.stderr), maxinterval=math.inf, leave=True,
                bar_format=PLAIN_PROGRESS if total else None, **every, **kwargs)


PLAIN_PROGRESS = '{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]'



class _LineWriter:
    """A stream for tqdm that writes each status update as its own line (no carriage returns, no blank lines)."""

    def __init__(self, stream):
        self.stream, self.last = stream, ''

    def write(self, s: str) -> None:
        s = s.replace('\r', '').rstrip()
        if s and s.split(' [')[0] != self.last:  # tqdm repeats the last count (new rate) when it closes
            self.stream.write(s + '\n')
            self.last = s.split(' [')[0]

    def flush(self) -> None:
        self.stream.flush()


def next_command(script: str, config_name: str, out_dir: str) -> str:
    """The command a stage prints as its `next:` hint: `script` with the config file of the same family as the
    one this run was given (config/demo/sae.py -> config/demo/<config_name>.py; none if this run had none) and
    this run's out_dir."""
    given = [a for a in sys.argv[1:] if not a.startswith('--') and a.endswith('.py')]
    cfg = os.path.join(os.path.dirname(given[0]), f'{config_name}.py') if given else ''
    return ' '.join(['python', script] + ([cfg] if cfg and os.path.isfile(cfg) else []) + [f'--out_dir={out_dir}'])


def matmul_flops(device: str, dtype: str = 'float32', n: int = 1024, reps: int = 5) -> float:
    """Measured GEMM rate (FLOP/s) of an n x n x n matmul on `device`: the peak MFU is reported against."""
    a = torch.randn(n, n, device=device, dtype=PTDTYPE[dtype])
    b = torch.randn(n, n, device=device, dtype=PTDTYPE[dtype])
    a @ b  # warm-up
    best = float('inf')
    for _ in range(reps):
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def results_table(out_dir: str) -> str:
    """The headline numbers of a run folder (transformer val loss, SAE metrics.json) as a Markdown table."""
    rows = []
    last = os.path.join(out_dir, 'transformer', 'last.pt')
    if os.path.isfile(last):
        ck = torch.load(last, map_location='cpu', weights_only=True)
        rows.append(('transformer val loss (nats/token)', f"{ck['best_val_loss']:.3f}"))
        rows.append(('transformer iterations', f"{ck['iter_num']:,}"))
    mpath = os.path.join(out_dir, 'sae', 'metrics.json')
    if os.path.isfile(mpath):
        with open(mpath) as f:
            m = json.load(f)
        rows += [('SAE', f"{m['kind']}, {m['d_in']} -> {m['n_features']} features, {m['tokens_seen']:,} tokens"),
                 ('L0 (features active per token)', f"{m['l0']:.1f}"),
                 ('FVU (fraction of variance unexplained)', f"{m['fvu']:.3f}"),
                 ('alive features', f"{m['alive_frac']:.1%}"),
                 ('ultralow (density < 1e-5) of alive', f"{m['ultralow_frac_of_alive']:.1%}"),
                 ('CE clean / spliced / zero-ablated / mean-ablated',
                  f"{m['ce_clean']:.3f} / {m['ce_spliced']:.3f} / {m['ce_zero_ablation']:.3f} / "
                  f"{m['ce_mean_ablation']:.3f}"),
                 ('loss recovered (zero ablation)', f"{m['loss_recovered']:.3f}"),
                 ('loss recovered (mean ablation)', f"{m['loss_recovered_mean_abl']:.3f}"),
                 ('evaluation window', f"{m['eval_tokens']:,} val tokens")]
    if not rows:
        return f"(no results in {out_dir} yet)"
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"| {'-' * width} | --- |"]
    return "\n".join(lines + [f"| {k.ljust(width)} | {v} |" for k, v in rows])


def save_png(fig, path: str) -> None:
    """A matplotlib figure laid out, written to path as a 120-dpi PNG (atomically) and closed."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    with atomic_file(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=120)
    plt.close(fig)
