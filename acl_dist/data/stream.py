"""The sharded WebDataset stream the trainer reads: per-rank batches, equal counts, exact resume.

How an epoch is laid out (everything is a pure function of (seed, epoch), so it is reproducible):

* The stream has ``slots = world_size * W`` readers, ``W = max(1, num_workers)``. Epoch ``e`` permutes the
  shard list with a seed drawn from (seed, e) and deals the shards to slots, largest first to the slot
  furthest below the samples its batch quota needs, so slots differ by about one shard at most. Rank ``r``
  owns slots ``r*W .. r*W+W-1``; each worker reads its slot's shards (local paths, URLs or ``pipe:``
  commands, via webdataset's gopen), shuffles samples in a buffer of ``data.shuffle_buffer``, and builds
  whole batches (decode, center crop/resize, channels, optional flip, [-1, 1]) that the DataLoader
  (``batch_size=None``) passes through.
* With fewer shards than slots, every slot reads all shards in the same shuffled order and keeps the
  batch-sized chunks that belong to it, so each sample still goes to exactly one slot (it costs extra
  reading, not decoding; a warning says to write more shards).
* ``batches_per_epoch = floor(total / (world_size * batch_size))`` with ``total`` from the manifest (or a
  one-off count of the tars). Batch ``j`` of an epoch comes from worker role ``j % W``, whose quota is
  fixed in advance, so every rank yields exactly ``batches_per_epoch`` batches and DDP never waits on a
  rank that ran dry. A slot holding more samples than its quota drops the rest; one holding fewer
  (uneven shards, corrupt samples) starts another shuffled pass over its shards to fill its quota.
  Workers persist across epochs (each plays one role per epoch, see ``_EndlessDataset``), so an epoch
  boundary costs no process start-up.
* Resume: ``set_position(e, b)`` makes each worker skip the raw samples of its first batches *before*
  decoding (tar reading and shuffling only) and rotates which worker goes first, so the stream continues
  with exactly the batches an uninterrupted stream would have produced. The order depends on world_size
  and num_workers: resume with the same ones (``layout`` is saved with the position; the trainer warns
  when it changed).
* The DataLoader gets a generator of its own. Starting a worker iterator otherwise draws its base seed from
  torch's *global* RNG in the main process: a resumed run starts its iterator at step k where the
  uninterrupted one started it at step 0, so every noise draw after the resume came out shifted by one
  number and resume was exact only without workers.
* Corrupt data (``data.corrupt``): a shard that cannot be read or ends early, a missing or undecodable
  image, a missing label. ``raise`` stops with the shard and key; ``skip`` counts it in ``stats``. A
  skipped image is replaced by another image of the same batch, so which samples form a batch depends
  only on the tar contents (that is what keeps resuming cheap and exact).
"""

from __future__ import annotations

import heapq
import io
import logging
import os
import random
import re
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Protocol

import braceexpand
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from acl_dist.data.shards import IMAGE_EXTENSIONS, MANIFEST_NAME, Manifest, center_crop_resize
from acl_dist.data.tar_reader import TarError, shard_samples
from acl_dist.errors import DataError

logger = logging.getLogger(__name__)

_MODES = {1: "L", 3: "RGB"}


# --------------------------------------------------------------------------------------------------------
# Which shards, how many samples


@dataclass
class ShardSet:
    urls: list[str]
    counts: list[int]  # samples per shard
    labelled: bool  # the shards carry {key}.cls labels

    @property
    def total(self) -> int:
        return sum(self.counts)


def resolve_shards(spec: str, corrupt: str = "skip", retries: int = 0) -> ShardSet:
    """Shard URLs and per-shard counts from a manifest path, a brace pattern or a ``pipe:`` pattern.

    Counts come from ``manifest.json`` (the given one, or one beside local shards naming them all);
    otherwise the tars are read once to count (slow for big remote sets: write a manifest).
    """
    if not spec:
        raise ValueError("data.shards is empty; give a manifest.json, a brace pattern or a pipe: pattern")
    if spec.endswith(".json"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"data.shards: no such manifest {spec}")
        return _from_manifest(Manifest.load(spec), os.path.dirname(os.path.abspath(spec)))
    urls = list(braceexpand.braceexpand(spec))
    local = not spec.startswith("pipe:") and "://" not in spec
    if local:
        missing = [u for u in urls if not os.path.isfile(u)]
        if missing:
            raise FileNotFoundError(f"data.shards: {len(missing)} of {len(urls)} shards missing, e.g. {missing[0]}")
        found = _manifest_beside(urls)
        if found is not None:
            return found
    return _count_shards(urls, corrupt, retries)


def _from_manifest(manifest: Manifest, root: str, only: set[str] | None = None) -> ShardSet:
    infos = [s for s in manifest.shards if only is None or s.name in only]
    if not infos:
        raise ValueError(f"data.shards: the manifest in {root} lists no shards")
    return ShardSet([os.path.join(root, s.name) for s in infos], [s.count for s in infos], bool(manifest.classes))


def _manifest_beside(urls: list[str]) -> ShardSet | None:
    root = os.path.dirname(os.path.abspath(urls[0]))
    path = os.path.join(root, MANIFEST_NAME)
    names = {os.path.basename(u) for u in urls}
    if not os.path.isfile(path) or any(os.path.dirname(os.path.abspath(u)) != root for u in urls):
        return None
    manifest = Manifest.load(path)
    if not names <= {s.name for s in manifest.shards}:
        return None
    found = _from_manifest(manifest, root, names)
    order = {os.path.abspath(u): i for i, u in enumerate(urls)}  # keep the pattern's order
    pairs = sorted(zip(found.urls, found.counts), key=lambda p: order[os.path.abspath(p[0])])
    return ShardSet([u for u, _ in pairs], [c for _, c in pairs], found.labelled)


def _count_shards(urls: list[str], corrupt: str = "skip", retries: int = 0) -> ShardSet:
    """Count the samples of shards without a manifest, under the recipe's ``data.corrupt`` policy: with
    ``skip`` an unreadable or truncated shard counts what could be read (with a warning), with ``raise`` it
    stops the run naming the shard."""
    logger.warning("data.shards has no manifest.json: reading %d shards once to count samples "
                   "(acl-dist shard writes a manifest; point data.shards at it to skip this)", len(urls))
    counts, labelled = [], False
    errors = _Errors(corrupt, retries=retries)
    for url in tqdm(urls, desc="count shards", unit="shard"):
        n = 0
        for sample in _read_samples([url], errors):
            n += 1
            labelled = labelled or "cls" in sample
        counts.append(n)
    if sum(counts) == 0:
        raise DataError(f"data.shards: none of the {len(urls)} shards holds a readable sample")
    return ShardSet(urls, counts, labelled)


# --------------------------------------------------------------------------------------------------------
# Epoch plan: which slot reads which shards, how many batches each worker makes


def deal_shards(counts: list[int], demands: list[int], seed: int, epoch: int) -> list[list[int]]:
    """Shard indices per slot for an epoch: permuted by (seed, epoch), then dealt largest first to the slot
    furthest below its demand (the samples its quota needs), so slots hold about what they use."""
    order = list(range(len(counts)))
    random.Random(f"shards/{seed}/{epoch}").shuffle(order)
    order.sort(key=lambda i: -counts[i])  # stable: equal-size shards keep the permuted order
    dealt: list[list[int]] = [[] for _ in demands]
    heap = [(-d, k) for k, d in enumerate(demands)]  # (-(demand - load), slot): largest deficit first
    heapq.heapify(heap)
    for i in order:
        deficit, k = heapq.heappop(heap)
        dealt[k].append(i)
        heapq.heappush(heap, (deficit + counts[i], k))
    return dealt


def worker_quotas(batches: int, workers: int) -> list[int]:
    """Batches made by each worker role: batch j of the epoch comes from role j % workers."""
    return [batches // workers + (r < batches % workers) for r in range(workers)]


def batches_before(batch: int, role: int, workers: int) -> int:
    """How many of the epoch's first ``batch`` batches role ``role`` made (what it skips on resume)."""
    return max(0, -(-(batch - role) // workers))


@dataclass
class RolePlan:
    """Everything one worker needs for one epoch (plain data: it is pickled to worker processes)."""

    urls: list[str]
    counts: list[int]  # expected samples per url (a shard that yields fewer was cut short)
    quota: int  # batches to make
    skip: int  # leading batches to skip undecoded (resume)
    seed: str  # base of this worker's random streams (sample shuffle, flips)
    order_seed: str  # base of each pass's shard order and, with ``chunks``, of its sample shuffle
    chunks: tuple[int, int, int, int] | None = None  # few shards: (world, rank, workers, role), see _raw_stream
    count_shard_errors: bool = True


@dataclass
class DecodeOptions:
    batch_size: int
    resolution: int
    channels: int
    flip: bool
    with_labels: bool
    shuffle_buffer: int
    corrupt: str
    retries: int = 0


# --------------------------------------------------------------------------------------------------------
# Reading and decoding (runs inside DataLoader workers)


@dataclass
class _Errors:
    """Shard/sample error policy: count and log (skip) or stop with a DataError (raise); ``retries``: how
    often a remote or ``pipe:`` shard is opened again after a failure before the policy applies."""

    mode: str
    corrupt: int = 0
    shard_errors: int = 0
    counting: bool = True
    retries: int = 0

    def handler(self, exn: Exception) -> bool:
        if self.mode == "raise":
            raise DataError(f"unreadable shard data: {exn} (data.corrupt: raise)")
        if self.counting:
            self.shard_errors += 1
            logger.warning("skipping unreadable shard data: %s", str(exn)[:300])
        return True

    def bad_sample(self, key: str, url: str, reason: str) -> None:
        if self.mode == "raise":
            raise DataError(f"corrupt sample {key!r} in {url}: {reason} (data.corrupt: raise)")
        self.corrupt += 1
        logger.warning("skipping corrupt sample %r in %s: %s", key, url, reason)


RETRY_WAIT = 0.5  # seconds before the first retry of a failed remote shard; doubled for each further one


def _retryable(url: str) -> bool:
    """Remote and ``pipe:`` shards can fail for a moment (network, a busy object store); local files cannot."""
    return url.startswith("pipe:") or "://" in url


def _read_samples(urls: list[str], errors: _Errors, counts: list[int] | None = None) -> Iterator[dict]:
    """Raw samples ({"__key__", "__url__", ext: bytes}) of the shards, in order.

    A damaged shard goes to the error handler (skip: keep what was read before the damage); a shard
    that reads cleanly but holds fewer samples than its manifest count (cut at a block boundary) too.
    """
    for k, url in enumerate(urls):
        n, failed = yield from _read_shard(url, errors)
        if not failed and counts is not None and n < counts[k]:
            errors.handler(TarError(f"{url}: ended after {n} of its {counts[k]} samples (truncated?)"))


def _read_shard(url: str, errors: _Errors) -> Generator[dict, None, tuple[int, bool]]:
    """One shard's samples; returns (how many, whether it failed for good).

    A remote or ``pipe:`` shard that fails is opened again up to ``errors.retries`` times, skipping the
    samples it already gave (a shard's order is fixed), so a passing failure changes nothing downstream.
    """
    n = 0
    for attempt in range(errors.retries + 1):
        try:
            for i, sample in enumerate(shard_samples(url)):
                if i >= n:  # after a retry, the first n were given already
                    n += 1
                    yield sample
            return n, False
        except TarError as e:
            if attempt < errors.retries and _retryable(url):
                logger.warning("shard %s failed (%s); opening it again (%d of %d)", url, str(e)[:200], attempt + 1,
                               errors.retries)
                time.sleep(RETRY_WAIT * 2 ** attempt)
                continue
            errors.handler(e)
    return n, True


def _shuffled(samples: Iterator[dict], bufsize: int, rng: random.Random) -> Iterator[dict]:
    """Reservoir-style shuffle buffer (as webdataset's shuffle) with an explicit, seeded rng."""
    if bufsize <= 1:
        yield from samples
        return
    buf: list[dict] = []
    for sample in samples:
        if len(buf) < bufsize:
            buf.append(sample)
            continue
        k = rng.randrange(bufsize)
        buf[k], sample = sample, buf[k]
        yield sample
    rng.shuffle(buf)
    yield from buf


def _pass_samples(plan: RolePlan, opts: DecodeOptions, errors: _Errors, p: int) -> Iterator[dict]:
    """Pass ``p`` over the role's shards: shard order and sample shuffle drawn from (plan.seed, p)."""
    order = list(range(len(plan.urls)))
    random.Random(f"{plan.order_seed}/order/{p}").shuffle(order)
    samples = _read_samples([plan.urls[i] for i in order], errors, [plan.counts[i] for i in order])
    buffer_seed = plan.order_seed if plan.chunks else plan.seed  # chunks: every slot shuffles alike
    yield from _shuffled(samples, opts.shuffle_buffer, random.Random(f"{buffer_seed}/buffer/{p}"))


def _raw_stream(plan: RolePlan, opts: DecodeOptions, errors: _Errors) -> Iterator[dict]:
    """The role's samples, pass after pass (a pass ends when its shards do), each with its flip bit.

    With ``plan.chunks`` (fewer shards than readers) every slot reads the same shuffled stream of all
    shards, cut into batch-sized chunks; chunk g is global batch g: rank g % world, that rank's batch
    g // world, made by role (g // world) % workers. Each sample then goes to exactly one reader.
    """
    flips = random.Random(f"{plan.seed}/flip")
    i = 0  # position in the shared stream, counted across passes
    for p in range(1_000_000):
        n = 0
        errors.counting = plan.count_shard_errors and p == 0  # report each broken shard once
        for sample in _pass_samples(plan, opts, errors, p):
            n, i = n + 1, i + 1
            if plan.chunks is not None:
                world, rank, workers, role = plan.chunks
                g = (i - 1) // opts.batch_size
                if g % world != rank or (g // world) % workers != role:
                    continue
            sample["__flip__"] = opts.flip and flips.random() < 0.5
            yield sample
        if n == 0:
            raise RuntimeError(f"data.shards: no readable samples in {plan.urls} (a full pass read none)")
        logger.debug("pass %d over %d shards gave %d samples; starting another", p, len(plan.urls), n)


def role_batches(plan: RolePlan, opts: DecodeOptions) -> Iterator[dict[str, torch.Tensor]]:
    """The worker's ``plan.quota`` batches after skipping ``plan.skip``: float32 [B, C, H, W] (+ int64 [B])."""
    errors = _Errors(opts.corrupt, retries=opts.retries)
    raw = _raw_stream(plan, opts, errors)
    last: tuple[list[np.ndarray], list[int]] | None = None
    for k in range(plan.quota):
        group = [next(raw) for _ in range(opts.batch_size)]
        if k < plan.skip:
            continue  # resume: the samples are consumed (order preserved) but never decoded
        images, labels = _decode_group(group, opts, errors)
        if not images:
            if last is None:
                raise RuntimeError(f"data.shards: every sample of a batch from {plan.urls} is corrupt")
            images, labels = last
        last = (images, labels)
        images, labels = _fill(images, labels, opts.batch_size)
        batch = {"image": torch.from_numpy(to_unit_range(images))}  # [B, C, H, W] float32 in [-1, 1]
        if opts.with_labels:
            batch["label"] = torch.tensor(labels, dtype=torch.int64)  # [B]
        batch["_corrupt"] = torch.tensor(errors.corrupt)
        batch["_shard_errors"] = torch.tensor(errors.shard_errors)
        errors.corrupt = errors.shard_errors = 0
        yield batch


def to_unit_range(images: list[np.ndarray]) -> np.ndarray:
    """uint8 [H, W, C] images -> one float32 [B, C, H, W] array in [-1, 1].

    Done here, in the worker, with numpy: the main process only receives the finished batch (it has a
    training step to run), and numpy's single-threaded cast is 3-10x faster than torch's on busy cores.
    """
    out = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32, order="C")  # [B, C, H, W]
    out *= np.float32(1 / 127.5)
    out -= np.float32(1.0)
    return out


def _fill(images: list[np.ndarray], labels: list[int], size: int) -> tuple[list[np.ndarray], list[int]]:
    """Replace skipped samples by repeating decoded ones, so every batch has ``size`` samples."""
    n = len(images)
    return [images[i % n] for i in range(size)], ([labels[i % n] for i in range(size)] if labels else labels)


def _decode_group(group: list[dict], opts: DecodeOptions, errors: _Errors) -> tuple[list[np.ndarray], list[int]]:
    images, labels = [], []
    for sample in group:
        key, url = sample.get("__key__", "?"), sample.get("__url__", "?")
        ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
        if ext is None:
            errors.bad_sample(key, url, "no image file")
            continue
        label = 0
        if opts.with_labels:
            try:
                label = int(sample["cls"])
            except (KeyError, ValueError) as e:
                errors.bad_sample(key, url, f"no valid .cls label ({type(e).__name__})")
                continue
        try:
            image = decode_image(sample[ext], opts.resolution, opts.channels, sample["__flip__"])
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for bad bytes
            reason = re.sub(r" <_io\.BytesIO object at 0x[0-9a-f]+>", "", str(e))  # PIL names its buffer
            errors.bad_sample(key, url, f"{type(e).__name__}: {reason}")
            continue
        images.append(image)
        labels.append(label)
    return images, labels


def decode_image(data: bytes, resolution: int, channels: int, flip: bool = False) -> np.ndarray:
    """Image bytes -> uint8 [R, R, C]: decode, channels (1: L, 3: RGB), center crop + resize, flip."""
    with Image.open(io.BytesIO(data)) as im:
        mode = _MODES[channels]
        if im.format == "JPEG" and min(im.size) >= 2 * resolution:
            im.draft(mode, (resolution, resolution))  # DCT-domain downscale: much faster for big JPEGs
        im = im.convert(mode) if im.mode != mode else im
        im.load()
        im = center_crop_resize(im, resolution)
        if flip:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr  # [R, R, C]


@dataclass
class StreamPlan:
    """Who reads what, as plain picklable data shared by the stream and its worker processes."""

    shards: ShardSet
    opts: DecodeOptions
    seed: int
    rank: int
    world_size: int
    workers: int  # max(1, num_workers): reader roles per rank

    @property
    def slots(self) -> int:
        return self.world_size * self.workers

    @property
    def batches_per_epoch(self) -> int:
        return self.shards.total // (self.world_size * self.opts.batch_size)

    @property
    def split_samples(self) -> bool:
        return len(self.shards.urls) < self.slots

    def role_plans(self, epoch: int, start: int = 0) -> list[RolePlan]:
        """This rank's W worker plans for ``epoch``, resuming at batch ``start``."""
        W, B = self.workers, self.opts.batch_size
        quotas = worker_quotas(self.batches_per_epoch, W)
        if self.split_samples:
            dealt = [list(range(len(self.shards.urls)))] * self.slots
        else:
            dealt = deal_shards(self.shards.counts, [quotas[s % W] * B for s in range(self.slots)], self.seed, epoch)
        plans = []
        for role in range(W):
            slot = self.rank * W + role
            seed = f"{self.seed}/{epoch}/{slot}"
            plans.append(RolePlan(
                urls=[self.shards.urls[i] for i in dealt[slot]], counts=[self.shards.counts[i] for i in dealt[slot]],
                quota=quotas[role], skip=batches_before(start, role, W), seed=seed,
                order_seed=f"{self.seed}/{epoch}" if self.split_samples else seed,
                chunks=(self.world_size, self.rank, W, role) if self.split_samples else None,
                count_shard_errors=not self.split_samples or slot == 0,
            ))
        return plans


class _EndlessDataset(IterableDataset):
    """A rank's batches from (epoch, start) on, epoch after epoch, in persistent DataLoader workers.

    The DataLoader hands out batch t (counted from this iterator's start) from worker t % W. In an epoch
    whose first batch index is ``start_e`` and whose first t is ``T_e``, batch j (role j % W) therefore
    comes from worker (T_e + j - start_e) % W: each worker plays one role per epoch, role
    (i - T_e + start_e) % W, and makes all of that role's batches. No worker ever runs dry, so the
    round-robin order is exact and no worker restarts at epoch boundaries.
    """

    def __init__(self, plan: StreamPlan, epoch: int, start: int):
        super().__init__()
        self.plan, self.epoch, self.start = plan, epoch, start

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        W, bpe = self.plan.workers, self.plan.batches_per_epoch
        epoch, start, first_t = self.epoch, self.start, 0
        while True:
            role = (worker - first_t + start) % W
            try:
                yield from role_batches(self.plan.role_plans(epoch, start)[role], self.plan.opts)
            except DataError as err:  # to the main process as data: a DataLoader re-raise would wrap it in a
                yield {"_error": str(err)}  # worker traceback, and the user should read one line
                return
            first_t += bpe - start
            epoch, start = epoch + 1, 0


# --------------------------------------------------------------------------------------------------------
# The stream the trainer holds


class ShardStream:
    """Endless per-rank batches {"image": float32 [B, C, H, W] in [-1, 1], "label": int64 [B]} from shards.

    ``batches_per_epoch`` is the same on every rank; ``position`` is the (epoch, batch) of the next batch;
    ``set_position`` makes the next ``iter()`` continue from there exactly. See the module docstring.
    """

    def __init__(self, plan: StreamPlan, *, num_workers: int):
        self.plan, self.num_workers = plan, num_workers
        self.batches_per_epoch = plan.batches_per_epoch
        self._position = (0, 0)
        self._stats = {"corrupt_skipped": 0, "shard_errors": 0}

    @property
    def position(self) -> tuple[int, int]:
        return self._position

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    @property
    def layout(self) -> dict[str, int]:
        """What the order of batches depends on besides the seed: resuming with other values is not exact."""
        return {"world_size": self.plan.world_size, "num_workers": self.num_workers}

    def set_position(self, epoch: int, batch: int) -> None:
        if epoch < 0 or not 0 <= batch <= self.batches_per_epoch:
            raise ValueError(f"position ({epoch}, {batch}) outside 0 <= batch <= {self.batches_per_epoch}")
        self._position = (epoch + 1, 0) if batch == self.batches_per_epoch else (epoch, batch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch, batch = self._position
        dataset = _EndlessDataset(self.plan, epoch, batch)
        if self.num_workers == 0:
            source = iter(dataset)
        else:  # its own generator: starting workers must not draw from the training's global torch RNG
            generator = torch.Generator().manual_seed(self.plan.seed * 7919 + self.plan.rank)
            source = iter(DataLoader(dataset, batch_size=None, num_workers=self.num_workers, prefetch_factor=4,
                                     generator=generator))
        for item in source:
            if "_error" in item:
                raise DataError(item["_error"])
            self._stats["corrupt_skipped"] += int(item.pop("_corrupt"))
            self._stats["shard_errors"] += int(item.pop("_shard_errors"))
            batch += 1
            if batch == self.batches_per_epoch:
                epoch, batch = epoch + 1, 0
            self._position = (epoch, batch)
            yield item


class ShardReading(Protocol):
    """What the stream reads of the ``data:`` section (``data.sources.shards.ShardOptions`` has it)."""

    shards: str
    num_workers: int
    shuffle_buffer: int
    flip: bool
    corrupt: str
    retries: int


def build_shard_stream(cfg: ShardReading, *, resolution: int, channels: int, batch_size: int, seed: int,
                       rank: int, world_size: int, with_labels: bool) -> ShardStream:
    """This rank's stream over ``cfg.shards``; fails up front (naming data.* keys) when it cannot work."""
    if channels not in _MODES:
        raise ValueError(f"model.channels: {channels} is not 1 or 3")
    if cfg.corrupt not in ("skip", "raise"):
        raise ValueError(f"data.corrupt: {cfg.corrupt!r} is not skip or raise")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    try:
        shards = resolve_shards(cfg.shards, cfg.corrupt, cfg.retries)
    except (OSError, ValueError) as err:  # a missing or empty manifest, missing shard files
        raise DataError(str(err)) from None
    if with_labels and not shards.labelled:
        raise DataError(f"data.shards: {cfg.shards} has no .cls labels, but this method needs labels "
                        "(write the shards from a labelled source: class sub-folders, .npz with y, builtin:digits)")
    opts = DecodeOptions(batch_size, resolution, channels, cfg.flip, with_labels, cfg.shuffle_buffer, cfg.corrupt,
                         cfg.retries)
    plan = StreamPlan(shards, opts, seed, rank, world_size, workers=max(1, cfg.num_workers))
    if plan.batches_per_epoch == 0:
        raise DataError(f"data.shards: {shards.total} samples cannot fill one batch of {batch_size} "
                        f"on each of {world_size} ranks")
    if plan.split_samples and rank == 0:
        logger.warning("data.shards: %d shards for %d readers (world_size %d x %d workers): every reader "
                       "reads all shards and keeps its own batch-sized chunks; write at least %d shards to "
                       "avoid the extra reading", len(shards.urls), plan.slots, world_size, plan.workers, plan.slots)
    return ShardStream(plan, num_workers=cfg.num_workers)
