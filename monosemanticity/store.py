"""
The activation store (`<out_dir>/activations/`, written by generate_activations.py), its reader, and an
on-the-fly source that computes the same rows from the transformer as they are requested (no disk).

Store layout:
    meta.json          d, dtype (numpy name), n_rows, shards [{file, rows, contexts [c0, c1), rank, crc32}],
                       complete, site ('blocks.0.mlp_hidden'), layer, tokens_per_context, context_length,
                       n_contexts, contexts_per_shard, n_shards, dataset, split, n_tokens, transformer_ckpt,
                       transformer_sha256, seed, world_size
    shard_00000.bin    raw row-major [rows, d] arrays, one np.memmap each; rows already shuffled across contexts

Shard g holds contexts [g*cps, (g+1)*cps) (cps = contexts per shard); their windows, the positions kept in each
and the row order are a pure function of (seed, g) (`shard_plan`), so a resumed or multi-rank harvest writes
the same bytes as one uninterrupted process.

Reading (both sources give the same iterator, `BatchStream`, of (B, d) tensors converted on the fly):
    store = ActivationStore('out/demo/activations')
    it = store.batches(8192, seed=0)            # infinite, shuffled, bounded RAM; it.position -> resume with start=
    for x in store.sequential(8192): ...        # one pass over all rows in order
    x = store.sample(819_200, seed=0)           # k random rows (resampling, geometric median)
    src = OnTheFlySource(model, 'data/pystdlib', site='blocks.0.mlp_hidden')
    it = src.batches(8192, seed=0)
"""
import json
import math
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from monosemanticity.common import UserError, atomic_file, load_data_meta, token_memmap, token_windows
from model import GPT, SITES, parse_site, site_name

STORE_DTYPES = ('float16', 'float32')
META_FIELDS = ('d', 'dtype', 'n_rows', 'shards', 'complete', 'site')


class StoreError(UserError, ValueError):
    """A store that cannot be read as it is; the message is one line naming the file."""


class NonFiniteRows(UserError, ValueError):
    """Rows that would hold NaN or inf. what: 'NaN' or 'inf' (the model's own activations), or 'overflow'
    (finite values beyond the store dtype's range; max_abs = their largest |x|). context: index into the plan,
    start: its first token."""

    def __init__(self, msg: str, what: str, context: int, start: int, max_abs: float = math.nan):
        super().__init__(msg)
        self.what, self.context, self.start, self.max_abs = what, context, start, max_abs


# ----------------------------------------------------------------------------- what is harvested

def resolve_site(model: GPT, site: str, layer: int = -1) -> tuple[str, int]:
    """('mlp_hidden', -1) or 'blocks.0.mlp_hidden' -> (full hook name, row width d). UserError if invalid."""
    if '.' in site:
        try:
            layer, site = parse_site(site)
        except ValueError as e:
            raise UserError(str(e)) from None
    elif site not in SITES:
        raise UserError(f"site '{site}' is not one of {', '.join(SITES)}")
    n_layer = model.config.n_layer
    if not -n_layer <= layer < n_layer:
        raise UserError(f"layer {layer} does not exist: the model has {n_layer} layer(s)")
    d = 4 * model.config.n_embd if site == 'mlp_hidden' else model.config.n_embd
    return site_name(layer % n_layer, site), d


@dataclass
class ContextPlan:
    """Which rows a shard (or an on-the-fly window) holds, and where each goes."""
    starts: np.ndarray  # (n,) int64 first token of each context window
    positions: np.ndarray  # (n, k) int64 sorted distinct positions kept in each context
    dest: np.ndarray  # (n*k,) int64 output row of context-order row j = c*k + i (a random permutation)
    context_length: int  # T, tokens per window

    @property
    def rows(self) -> int:
        return self.positions.size


def plan_contexts(rng: np.random.Generator, n: int, n_tokens: int, context_length: int,
                  tokens_per_context: int) -> ContextPlan:
    """n random windows of context_length tokens out of n_tokens, k distinct positions in each, a row permutation."""
    T, k = context_length, tokens_per_context
    starts = rng.integers(0, n_tokens - T + 1, size=n, dtype=np.int64)
    dest = rng.permutation(n * k).astype(np.int64)
    if k == T:
        positions = np.broadcast_to(np.arange(T, dtype=np.int64), (n, T)).copy()
    else:  # the k smallest of T uniforms per context: a uniform k-subset (sorted, so independent of argpartition)
        positions = np.empty((n, k), dtype=np.int64)
        for i in range(0, n, 1024):  # blocks bound the temporary (1024, T) draw; the stream does not depend on it
            u = rng.random((min(1024, n - i), T))
            positions[i:i + len(u)] = np.sort(np.argpartition(u, k - 1, axis=1)[:, :k], axis=1)
    return ContextPlan(starts, positions, dest, T)


def shard_contexts(shard: int, n_contexts: int, contexts_per_shard: int) -> tuple[int, int]:
    """The global context indices [c0, c1) of shard `shard`."""
    c0 = shard * contexts_per_shard
    return c0, min(c0 + contexts_per_shard, n_contexts)


def shard_plan(seed: int, shard: int, n_contexts: int, contexts_per_shard: int, n_tokens: int,
               context_length: int, tokens_per_context: int) -> ContextPlan:
    """The plan of one store shard: a pure function of (seed, shard index), whatever the rank or the resume."""
    c0, c1 = shard_contexts(shard, n_contexts, contexts_per_shard)
    return plan_contexts(np.random.default_rng([seed, shard]), c1 - c0, n_tokens, context_length, tokens_per_context)


@torch.no_grad()
def plan_rows(model: GPT, site: str, data_dir: str, split: str, token_dtype: str, plan: ContextPlan,
              batch_size: int, device: str, out_dtype: torch.dtype) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Run the model on the plan's contexts, batch_size at a time; per batch yield (dest, rows): the kept rows
    (b*k, d) in out_dtype on `device`, in context order, and dest (b*k,) where each goes in the plan's row order.
    Raises NonFiniteRows, naming the context, if a row is NaN or inf in out_dtype (nothing of it is yielded)."""
    n, k = plan.positions.shape
    limit = torch.finfo(out_dtype).max
    for i in range(0, n, batch_size):
        pos = plan.positions[i:i + batch_size]  # (b, k)
        tokens = token_memmap(data_dir, split, token_dtype)  # a fresh memmap per batch (nanoGPT #287)
        x = token_windows(tokens, plan.starts[i:i + batch_size], plan.context_length).to(device)  # (b, T)
        _, _, acts = model.run(x, capture=[site], need_logits=False)
        a = acts[site]  # (b, T, d)
        flat = torch.from_numpy((pos + np.arange(len(pos))[:, None] * a.shape[1]).reshape(-1)).to(device)  # (b*k,)
        kept = a.reshape(-1, a.shape[-1]).index_select(0, flat)  # (b*k, d) in the model's dtype
        # never write NaN/inf (the SAE would train on it silently): every |x| <= out dtype's max (NaN fails <=).
        # A row's norm bounds its |x| and is NaN/inf if one is: one fast pass (~0.5% of the batch; isfinite on the
        # float16 rows: ~15%). Entries are compared one by one only when a norm exceeds the limit.
        if not torch.linalg.vector_norm(kept, dim=1).max() <= limit and not (kept.abs() <= limit).all():
            raise nonfinite_rows(kept, out_dtype, site, plan, i, k, split)
        yield plan.dest[i * k:i * k + len(kept)], kept.to(out_dtype)


def fill_rows_(model: GPT, site: str, data_dir: str, split: str, token_dtype: str, plan: ContextPlan,
               out: np.ndarray, batch_size: int, device: str, on_batch: Callable[[int], None] | None = None,
               out_copied: threading.Event | None = None) -> None:
    """out[dest[j]] = row j of the plan (`plan_rows`), out (plan.rows, d) a float16 or float32 array.
    out_copied: while it is not set (ShardWriter is still copying out's previous rows to a file), rows are held
    back, up to a quarter of out, so that the model runs meanwhile. Raises NonFiniteRows as plan_rows does."""
    out_dtype = torch.float16 if out.dtype == np.float16 else torch.float32
    held: list[tuple[np.ndarray, np.ndarray]] = []  # (dest, rows) not yet in out
    for dest, rows in plan_rows(model, site, data_dir, split, token_dtype, plan, batch_size, device, out_dtype):
        held.append((dest, rows.cpu().numpy()))
        if out_copied is None or out_copied.is_set() or sum(len(r) for _, r in held) >= len(out) // 4:
            _scatter_(out, held, out_copied)
        if on_batch is not None:
            on_batch(len(rows))
    _scatter_(out, held, out_copied)


def _scatter_(out: np.ndarray, held: list[tuple[np.ndarray, np.ndarray]], out_copied: threading.Event | None):
    """Write the held (dest, rows) into out once out_copied is set, and empty `held`."""
    if out_copied is not None:
        out_copied.wait()
    for dest, rows in held:
        out[dest] = rows
    held.clear()


def nonfinite_rows(kept: torch.Tensor, out_dtype: torch.dtype, site: str, plan: ContextPlan, first: int, k: int,
                   split: str) -> NonFiniteRows:
    """The error for a batch of rows kept (b*k, d), the first of them from the plan's context `first`, that are
    not all finite in out_dtype."""
    limit = torch.finfo(out_dtype).max
    bad_row = int((~(kept.abs() <= limit)).any(1).nonzero()[0])
    c = first + bad_row // k  # the plan's context holding the first bad row
    start = int(plan.starts[c])
    where = f"context {c} (tokens {start}..{start + plan.context_length - 1} of {split}.bin)"
    if torch.isfinite(kept).all():
        max_abs = kept.abs().max().item()
        return NonFiniteRows(f"{site} rows of {where} overflow {str(out_dtype).removeprefix('torch.')} "
                             f"(max |x| = {max_abs:.4g} > {limit:g})", 'overflow', c, start, max_abs)
    what = 'NaN' if kept.isnan().any() else 'inf'
    return NonFiniteRows(f"the transformer produced {what} at {site} in {where}", what, c, start)


# ----------------------------------------------------------------------------- writing shards

class ShardWriter:
    """Saves shards in a background thread, one at a time, while the caller computes the next one. save() returns
    at once; the thread copies the rows to a temp file, sets `copied` (the caller may refill its buffer), fsyncs
    and renames it (common.atomic_file), sets entry['crc32'] and drops the file from the page cache. The next
    save() or wait() returns once the previous shard is in place. bench.harvest: usually 3-8% faster than saving
    in line, when fill_rows_ holds rows back until `copied` (so the copy overlaps the model); without that, no
    faster."""

    def __init__(self):
        self._thread = ThreadPoolExecutor(1)
        self._saving: Future | None = None
        self.copied = threading.Event()
        self.copied.set()

    def save(self, path: str, rows: np.ndarray, entry: dict) -> None:
        """Start saving rows (n, d) to `path` (do not modify rows until `copied` is set)."""
        self.wait()
        self.copied.clear()
        self._saving = self._thread.submit(self._save, path, rows, entry)

    def _save(self, path: str, rows: np.ndarray, entry: dict) -> None:
        try:
            with atomic_file(path) as f:  # the shard appears under its final name only when it is fully on disk
                f.write(memoryview(np.ascontiguousarray(rows)).cast('B'))
                self.copied.set()
        finally:
            self.copied.set()
        entry['crc32'] = file_crc32(path)  # read back from the page cache
        drop_from_page_cache(path)  # written once, read later: its cache pages are recycled for the next shard

    def wait(self) -> None:
        """Block until the last shard saved is in place: renamed, crc32 in its entry (raises what saving raised)."""
        if self._saving is not None:
            self._saving.result()
            self._saving = None

    def close(self) -> None:
        self.wait()
        self._thread.shutdown()


def drop_from_page_cache(path: str) -> None:
    """Tell the kernel the file's cached pages will not be read soon (much faster writes of the next shards)."""
    if hasattr(os, 'posix_fadvise'):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def shard_file_error(path: str, rows: int, d: int, dtype: np.dtype, meta_path: str) -> str | None:
    """Why the shard file at `path` (listed in meta_path with `rows` rows) cannot be read as (rows, d) of dtype:
    it is missing or has another size. None if it can."""
    if not os.path.isfile(path):
        return f"{path} is missing (listed in {meta_path}): the store is damaged, harvest it again"
    want, size = rows * d * dtype.itemsize, os.path.getsize(path)
    if size != want:
        return (f"{path} has {size:,} bytes, but {meta_path} says {rows:,} rows x d={d} x {dtype.itemsize} bytes "
                f"= {want:,}: truncated or corrupt shard")
    return None


# ----------------------------------------------------------------------------- the batch iterator

class _Windows:
    """A stream of rows cut into windows: locate(row) -> (key, offset), next(key), load(key) -> (rows, order)."""

    def locate(self, row: int) -> tuple[tuple, int]:
        raise NotImplementedError

    def next(self, key: tuple) -> tuple:
        raise NotImplementedError

    def load(self, key: tuple) -> tuple[np.ndarray | torch.Tensor, np.ndarray | None]:
        """The window's rows (n, d) (native dtype) and the order to yield them in (None = as they are)."""
        raise NotImplementedError


class BatchStream(Iterator[torch.Tensor]):
    """Infinite iterator of (batch_size, d) tensors. `position` = batches yielded so far (start included):
    the same source's `batches(batch_size, seed, start=position)` continues with exactly the next batch."""

    def __init__(self, windows: _Windows, batch_size: int, start: int = 0, dtype: torch.dtype = torch.float32,
                 device: str = 'cpu', prefetch: bool = False):
        self.batch_size, self.position, self.dtype, self.device = batch_size, start, dtype, device
        self._w = windows
        self._key, self._off = windows.locate(start * batch_size)
        self._pool = ThreadPoolExecutor(1) if prefetch else None
        self._next = None
        self._cur = self._load(self._key)

    def _load(self, key: tuple) -> tuple[np.ndarray | torch.Tensor, np.ndarray | None]:
        if self._pool is None:
            return self._w.load(key)
        ahead, self._next = self._next, None
        cur = ahead[1].result() if ahead is not None and ahead[0] == key else self._w.load(key)
        nxt = self._w.next(key)
        self._next = (nxt, self._pool.submit(self._w.load, nxt))  # read the next window meanwhile
        return cur

    def __next__(self) -> torch.Tensor:
        parts, need = [], self.batch_size
        while need:
            rows, order = self._cur
            take = min(need, len(rows) - self._off)
            sel = slice(self._off, self._off + take)
            parts.append(torch.as_tensor(rows[sel] if order is None else rows[order[sel]]))  # no copy
            self._off += take
            need -= take
            if self._off == len(rows):
                self._key, self._off = self._w.next(self._key), 0
                self._cur = self._load(self._key)
        self.position += 1
        x = parts[0] if len(parts) == 1 else torch.cat(parts)  # (B, d) native dtype, where the window is
        if self.device.startswith('cuda') and x.device.type == 'cpu':
            return x.pin_memory().to(self.device, non_blocking=True).to(self.dtype)
        return x.to(self.device).to(self.dtype)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# ----------------------------------------------------------------------------- the on-disk store

def read_store_meta(path: str) -> dict:
    """The store's meta.json in folder `path`, checked to have META_FIELDS (StoreError otherwise)."""
    meta_path = os.path.join(path, 'meta.json')
    if not os.path.isfile(meta_path):
        raise StoreError(f"{meta_path} not found: no activation store here (make one with generate_activations.py)")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{meta_path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise StoreError(f"{meta_path} is not a JSON object")
    for k in META_FIELDS:
        if k not in meta:
            raise StoreError(f"{meta_path} has no '{k}' field: not an activation store's meta.json")
    return meta


class _StoreWindows(_Windows):
    """Epoch e: all (shard, chunk) pieces in an order drawn from (seed, e), grouped into windows of about
    shuffle_buffer rows; window w's rows are yielded in an order drawn from (seed, e, w)."""

    def __init__(self, store: 'ActivationStore', seed: int, shuffle_buffer: int, chunk_rows: int):
        self.store, self.seed = store, seed
        chunk_rows = max(1, min(chunk_rows, shuffle_buffer))
        self.per_window = max(1, shuffle_buffer // chunk_rows)
        self.chunks = [(s, a, min(a + chunk_rows, rows)) for s, (_, rows) in enumerate(store.shards)
                       for a in range(0, rows, chunk_rows)]
        self._cache: dict[int, tuple] = {}

    def layout(self, epoch: int) -> tuple[list[list[tuple[int, int, int]]], np.ndarray]:
        """The epoch's windows (lists of chunks) and their cumulative row counts."""
        got = self._cache.get(epoch)
        if got is None:  # the read-ahead thread may ask for the next epoch: keep two, replace the dict atomically
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.chunks))
            chunks = [self.chunks[i] for i in order]
            windows = [chunks[i:i + self.per_window] for i in range(0, len(chunks), self.per_window)]
            got = windows, np.cumsum([sum(b - a for _, a, b in w) for w in windows])
            self._cache = {e: v for e, v in self._cache.items() if e >= epoch - 1} | {epoch: got}
        return got

    def locate(self, row: int) -> tuple[tuple, int]:
        epoch, r = divmod(row, self.store.n_rows)
        _, cum = self.layout(epoch)
        w = int(np.searchsorted(cum, r, side='right'))
        return (epoch, w), r - (int(cum[w - 1]) if w else 0)

    def next(self, key: tuple) -> tuple:
        epoch, w = key
        windows, _ = self.layout(epoch)
        return (epoch, w + 1) if w + 1 < len(windows) else (epoch + 1, 0)

    def load(self, key: tuple) -> tuple[np.ndarray, np.ndarray]:
        epoch, w = key
        windows, _ = self.layout(epoch)
        chunks = windows[w]
        rows = np.empty((sum(b - a for _, a, b in chunks), self.store.d), dtype=self.store.dtype)
        i = 0
        for s, a, b in chunks:
            rows[i:i + b - a] = self.store.memmap(s)[a:b]  # a fresh memmap per chunk (nanoGPT #287)
            i += b - a
        return rows, np.random.default_rng([self.seed, epoch, w]).permutation(len(rows))


class ActivationStore:
    """A harvested store, checked against its files on open (one-line StoreError naming the file)."""

    def __init__(self, path: str, allow_incomplete: bool = False):
        self.path = path
        self.meta = meta = read_store_meta(path)
        meta_path = os.path.join(path, 'meta.json')
        if meta['dtype'] not in STORE_DTYPES:
            raise StoreError(f"{meta_path}: dtype '{meta['dtype']}' is not one of {', '.join(STORE_DTYPES)}")
        if not isinstance(meta['d'], int) or meta['d'] <= 0:
            raise StoreError(f"{meta_path}: d={meta['d']!r} is not a positive integer")
        self.d, self.dtype = meta['d'], np.dtype(meta['dtype'])
        self.site = meta['site']
        self.shards: list[tuple[str, int]] = []
        for s in meta['shards']:
            f = os.path.join(path, s['file'])
            if error := shard_file_error(f, s['rows'], self.d, self.dtype, meta_path):
                raise StoreError(error)
            self.shards.append((f, s['rows']))
        self.n_rows = sum(r for _, r in self.shards)
        if self.n_rows != meta['n_rows']:
            raise StoreError(f"{meta_path}: n_rows={meta['n_rows']:,} but its shards hold {self.n_rows:,} rows")
        if not meta['complete'] and not allow_incomplete:
            raise StoreError(f"{meta_path}: the store is incomplete ({self.n_rows:,} rows so far): finish it by "
                             f"running the same generate_activations.py command again")
        if self.n_rows == 0:
            raise StoreError(f"{meta_path}: the store holds no rows yet")
        self._cum = np.cumsum([0] + [r for _, r in self.shards])

    def __repr__(self) -> str:
        return f"ActivationStore({self.path!r}: {self.n_rows:,} rows x d={self.d} {self.dtype}, {self.site})"

    @property
    def nbytes(self) -> int:
        return self.n_rows * self.d * self.dtype.itemsize

    def memmap(self, shard: int) -> np.memmap:
        """Shard `shard` as a read-only (rows, d) memmap; make a new one per use."""
        f, rows = self.shards[shard]
        return np.memmap(f, dtype=self.dtype, mode='r', shape=(rows, self.d))

    def batches(self, batch_size: int, seed: int = 0, start: int = 0, shuffle_buffer: int = 2 ** 18,
                chunk_rows: int = 2 ** 13, dtype: torch.dtype = torch.float32, device: str = 'cpu',
                prefetch: bool = True) -> BatchStream:
        """Infinite shuffled (batch_size, d) batches: every epoch visits each row once. RAM: two windows of
        shuffle_buffer rows (one being read ahead). Resuming at start=position skips whole windows unread."""
        return BatchStream(_StoreWindows(self, seed, shuffle_buffer, chunk_rows), batch_size, start, dtype, device,
                           prefetch)

    def sequential(self, batch_size: int, dtype: torch.dtype = torch.float32,
                   device: str = 'cpu') -> Iterator[torch.Tensor]:
        """One pass over all rows in store order, (batch_size, d) batches (the last one may be smaller)."""
        for s, (_, rows) in enumerate(self.shards):
            for a in range(0, rows, batch_size):
                yield torch.from_numpy(np.array(self.memmap(s)[a:a + batch_size])).to(device).to(dtype)

    def sample(self, k: int, seed: int = 0, dtype: torch.dtype = torch.float32, device: str = 'cpu') -> torch.Tensor:
        """k random rows (k, d), distinct if k <= n_rows (else drawn with replacement). RAM: the output only."""
        rng = np.random.default_rng([seed, 2 ** 31])
        idx = rng.choice(self.n_rows, size=k, replace=k > self.n_rows)
        order = np.argsort(idx, kind='stable')
        sorted_idx = idx[order]
        out = np.empty((k, self.d), dtype=self.dtype)
        bounds = np.searchsorted(sorted_idx, self._cum)
        for s in range(len(self.shards)):
            a, b = bounds[s], bounds[s + 1]
            if b > a:
                out[order[a:b]] = self.memmap(s)[sorted_idx[a:b] - self._cum[s]]
        return torch.from_numpy(out).to(device).to(dtype)

    def verify(self) -> None:
        """Read every shard and check its crc32 against meta.json (StoreError naming the first bad file)."""
        for s, (f, _) in enumerate(self.shards):
            want = self.meta['shards'][s].get('crc32')
            if want is not None and file_crc32(f) != want:
                raise StoreError(f"{f}: crc32 differs from {os.path.join(self.path, 'meta.json')}: corrupt shard")


def file_crc32(path: str, block: int = 2 ** 24) -> int:
    crc = 0
    with open(path, 'rb') as f:
        while chunk := f.read(block):
            crc = zlib.crc32(chunk, crc)
    return crc


# ----------------------------------------------------------------------------- the on-the-fly source

class _OnTheFlyWindows(_Windows):
    """Window i: the rows of n fresh contexts drawn from (source seed, stream seed, tag, i), already shuffled."""

    def __init__(self, src: 'OnTheFlySource', seed: int, tag: int):
        self.src, self.key0 = src, [src.seed, seed, tag]

    def locate(self, row: int) -> tuple[tuple, int]:
        i, off = divmod(row, self.src.window_rows)
        return (i,), off

    def next(self, key: tuple) -> tuple:
        return (key[0] + 1,)

    def load(self, key: tuple) -> tuple[torch.Tensor, None]:
        """The window's rows (n, d) float32, shuffled, on the source's device."""
        s = self.src
        plan = plan_contexts(np.random.default_rng(self.key0 + [key[0]]), s.window_contexts, s.n_tokens,
                             s.context_length, s.tokens_per_context)
        out = torch.empty((plan.rows, s.d), dtype=torch.float32, device=s.device)
        for dest, rows in plan_rows(s.model, s.site, s.data_dir, s.split, s.token_dtype, plan, s.batch_size_contexts,
                                    s.device, torch.float32):
            out[torch.from_numpy(dest).to(s.device)] = rows
        return out, None


class OnTheFlySource:
    """Rows computed by the transformer as batches are requested: same iterator as ActivationStore.batches.
    Each window of ~shuffle_buffer rows comes from fresh random contexts and is shuffled across them; it stays a
    tensor on `device` (the model's), so batches for that device never pass through host memory."""

    def __init__(self, model: GPT, data_dir: str, split: str = 'train', site: str = 'mlp_hidden',
                 context_length: int = 0, tokens_per_context: int = 200, batch_size_contexts: int = 32,
                 seed: int = 0, device: str = 'cpu', shuffle_buffer: int = 2 ** 16):
        self.model = model.eval()
        self.site, self.d = resolve_site(model, site)
        self.data_dir, self.split, self.seed, self.device = data_dir, split, seed, device
        self.context_length = context_length or model.config.block_size
        self.tokens_per_context = tokens_per_context
        self.batch_size_contexts = batch_size_contexts
        if self.context_length > model.config.block_size:
            raise UserError(f"context_length {self.context_length} > the model's block_size "
                            f"{model.config.block_size}")
        if not 0 < tokens_per_context <= self.context_length:
            raise UserError(f"tokens_per_context={tokens_per_context} must be in 1..{self.context_length}")
        self.token_dtype = load_data_meta(data_dir)['dtype']
        self.n_tokens = len(token_memmap(data_dir, split, self.token_dtype))
        if self.n_tokens < self.context_length:
            raise UserError(f"{os.path.join(data_dir, split + '.bin')} has {self.n_tokens} tokens, "
                            f"fewer than context_length={self.context_length}")
        self.window_contexts = max(1, math.ceil(shuffle_buffer / tokens_per_context))
        self.window_rows = self.window_contexts * tokens_per_context
        self.n_rows = None  # endless

    def batches(self, batch_size: int, seed: int = 0, start: int = 0, dtype: torch.dtype = torch.float32,
                device: str | None = None, prefetch: bool = False, **_ignored) -> BatchStream:
        """Endless shuffled (batch_size, d) batches; resuming at start=position recomputes one window only.
        Store-only options (shuffle_buffer, chunk_rows) are accepted and ignored."""
        return BatchStream(_OnTheFlyWindows(self, seed, 0), batch_size, start, dtype, device or self.device,
                           prefetch)

    def sample(self, k: int, seed: int = 0, dtype: torch.dtype = torch.float32, device: str = 'cpu') -> torch.Tensor:
        """k rows (k, d) from contexts of their own (not the ones `batches` yields for this seed)."""
        return next(BatchStream(_OnTheFlyWindows(self, seed, 1), k, 0, dtype, device))
