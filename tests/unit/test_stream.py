"""ShardStream over real tar shards and real DataLoader workers (CPU, tiny images).

Every sample's label is its index and its pixels are index % 256, so a batch tells exactly which samples it
holds and whether image and label stayed together.
"""

import contextlib
import os
import signal
import tarfile

import numpy as np
import pytest
import torch

from acl_dist.data.shards import Sample, write_shards
from acl_dist.data.sources.shards import ShardOptions
from acl_dist.data.stream import build_shard_stream, deal_shards
from acl_dist.errors import DataError


@contextlib.contextmanager
def deadline(seconds):
    """Fail (instead of hanging the suite) if the block runs longer than ``seconds``."""

    def boom(*_):
        raise TimeoutError(f"stream did not finish within {seconds}s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def make_shards(root, counts, labels=True):
    """Shards with the given sample counts; sample i is an 8x8 gray image of value i % 256, label i."""
    samples, i = [], 0
    for _ in range(sum(counts)):
        samples.append(Sample(f"s{i:05d}", np.full((8, 8), i % 256, np.uint8), i if labels else None))
        i += 1
    # one write per shard size: write_shards rolls at max_count, so write uneven sets shard by shard
    if len(set(counts)) == 1:
        write_shards(samples, root, max_count=counts[0], progress=False)
    else:
        _write_uneven(samples, root, counts)
    return os.path.join(root, "manifest.json")


def _write_uneven(samples, root, counts):
    from acl_dist.data.shards import Manifest

    parts, start = [], 0
    for k, n in enumerate(counts):
        m = write_shards(samples[start:start + n], os.path.join(root, f"p{k}"), max_count=n, progress=False)
        os.replace(os.path.join(root, f"p{k}", m.shards[0].name), os.path.join(root, f"shard-{k:06d}.tar"))
        m.shards[0].name = f"shard-{k:06d}.tar"
        parts.append(m)
        start += n
    Manifest(count=len(samples), shards=[p.shards[0] for p in parts], classes=[0]).save(root)


def stream(manifest, *, rank=0, world=1, workers=0, batch=4, seed=0, labels=True, **kw):
    cfg = ShardOptions(source="shards", shards=manifest, num_workers=workers, shuffle_buffer=kw.pop("buffer", 10), **kw)
    return build_shard_stream(cfg, resolution=8, channels=1, batch_size=batch, seed=seed, rank=rank,
                              world_size=world, with_labels=labels)


def take(s, n):
    it = iter(s)
    return [next(it) for _ in range(n)]


def ids(batches):
    out = []
    for b in batches:
        assert b["image"].shape[1:] == (1, 8, 8) and b["image"].dtype == torch.float32
        pix = torch.round((b["image"][:, 0, 0, 0] + 1) * 127.5).long()
        assert torch.equal(pix, b["label"] % 256)  # image and label travel together
        out += b["label"].tolist()
    return out


def test_two_ranks_two_workers_cover_every_sample_once(tmp_path):
    manifest = make_shards(tmp_path, [12] * 8)
    streams = [stream(manifest, rank=r, world=2, workers=2) for r in range(2)]
    assert [s.batches_per_epoch for s in streams] == [12, 12]  # 96 / (2 ranks * 4)
    with deadline(60):
        per_rank = [take(s, 24) for s in streams]  # two epochs each
    epochs = [[ids(b[e * 12:(e + 1) * 12]) for b in per_rank] for e in range(2)]
    for e in range(2):
        seen = epochs[e][0] + epochs[e][1]
        assert sorted(seen) == list(range(96)), f"epoch {e} is not a partition"
    assert epochs[0][0] != epochs[1][0]  # reshuffled per epoch
    assert streams[0].position == (2, 0)


def test_uneven_shards_equal_batches_per_rank(tmp_path):
    manifest = make_shards(tmp_path, [13, 7, 11, 5, 9])  # 45 samples
    streams = [stream(manifest, rank=r, world=2, batch=4) for r in range(2)]
    assert [s.batches_per_epoch for s in streams] == [5, 5]  # floor(45 / 8)
    for s in streams:
        batches = take(s, 5)
        assert all(b["label"].shape == (4,) for b in batches) and s.position == (1, 0)
        assert len(set(ids(batches))) == 20  # no repeats within a rank's epoch


def test_deal_shards_balances():
    counts = [10, 10, 10, 10, 3]
    dealt = deal_shards(counts, demands=[20, 20], seed=0, epoch=0)
    loads = sorted(sum(counts[i] for i in d) for d in dealt)
    assert loads == [20, 23] and sorted(sum(dealt, [])) == [0, 1, 2, 3, 4]
    dealt = deal_shards([6] * 4, demands=[16, 8], seed=0, epoch=0)  # the slot that needs more gets more
    assert [len(d) for d in dealt] == [3, 1]
    assert deal_shards([5] * 6, [10] * 3, 0, 0) != deal_shards([5] * 6, [10] * 3, 0, 1)  # epoch reshuffles


@pytest.mark.parametrize("workers", [0, 2])
def test_set_position_continues_exactly(tmp_path, workers):
    manifest = make_shards(tmp_path, [10] * 6)  # 60 samples, batch 4 -> 15 batches
    full = take(stream(manifest, workers=workers, flip=True), 15 + 6)
    resumed = stream(manifest, workers=workers, flip=True)
    resumed.set_position(1, 3)
    with deadline(60):
        rest = take(resumed, 3)
    for a, b in zip(full[15 + 3:], rest):
        assert torch.equal(a["label"], b["label"]) and torch.equal(a["image"], b["image"])
    assert resumed.position == (1, 6)
    resumed.set_position(0, 15)  # end of epoch 0 == start of epoch 1
    assert resumed.position == (1, 0)


def _corrupt(manifest_dir):
    """Truncate shard 2 mid-way and overwrite the PNG signature of sample s00005 (in shard 0)."""
    s2 = os.path.join(manifest_dir, "shard-000002.tar")
    with open(s2, "r+b") as f:
        f.truncate(os.path.getsize(s2) // 2)
    s0 = os.path.join(manifest_dir, "shard-000000.tar")
    with tarfile.open(s0) as t:
        offset = t.getmember("s00005.png").offset_data
    with open(s0, "r+b") as f:
        f.seek(offset)
        f.write(b"\0" * 16)


def test_corrupt_data_skipped_and_counted(tmp_path):
    manifest = make_shards(tmp_path, [12] * 4)
    _corrupt(tmp_path)
    s = stream(manifest)
    with deadline(60):
        seen = ids(take(s, 12))  # a whole epoch still has every batch, full size
    assert 5 not in seen
    assert s.stats["corrupt_skipped"] >= 1 and s.stats["shard_errors"] == 1  # the cut shard, reported once
    with pytest.raises(DataError, match="data.corrupt: raise"):
        take(stream(manifest, corrupt="raise"), 12)


def test_fewer_shards_than_readers_still_partitions(tmp_path):
    manifest = make_shards(tmp_path, [20, 20])  # 2 shards for 2 ranks x 2 workers = 4 readers
    streams = [stream(manifest, rank=r, world=2, workers=2) for r in range(2)]
    with deadline(60):
        seen = [ids(take(s, 5)) for s in streams]  # 40 / (2 * 4) = 5 batches per rank
    assert sorted(seen[0] + seen[1]) == list(range(40))


def test_clear_errors(tmp_path):
    manifest = make_shards(tmp_path, [6, 6], labels=False)
    with pytest.raises(DataError, match="data.shards: .* no .cls labels"):
        stream(manifest)
    with pytest.raises(DataError, match="cannot fill one batch"):
        stream(manifest, labels=False, batch=8, world=2)
    with pytest.raises(DataError, match="data.shards"):
        stream(str(tmp_path / "nope-{0..3}.tar"), labels=False)


def test_brace_and_pipe_patterns_without_manifest(tmp_path, caplog):
    from acl_dist.data.stream import resolve_shards

    make_shards(tmp_path, [8] * 3)
    brace = str(tmp_path / "shard-{000000..000002}.tar")
    found = resolve_shards(str(tmp_path / "shard-{000002..000000..-1}.tar"))  # manifest beside: no scan
    assert found.counts == [8, 8, 8] and found.urls[0].endswith("shard-000002.tar") and found.labelled
    assert "no manifest" not in caplog.text
    os.remove(tmp_path / "manifest.json")  # counts now come from reading the tars once
    a = ids(take(stream(brace), 6))
    b = ids(take(stream(f"pipe:cat {brace}"), 6))
    assert a == b and sorted(a) == list(range(24))


def test_tar_reader_formats_and_damage(tmp_path):
    """Long names (pax and GNU), directories and meta files; damaged and non-tar files raise TarError."""
    import io as _io

    from acl_dist.data.tar_reader import TarError, shard_samples

    long_key = "d" * 120 + "/s.1"  # over ustar's 100 chars: needs a pax/GNU header
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        path = tmp_path / f"{fmt}.tar"
        with tarfile.open(path, "w", format=fmt) as t:
            for name, data in [("__meta__", b"x"), (f"{long_key}.PNG", b"img"), (f"{long_key}.cls", b"3"),
                               ("b.jpg", b"j")]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, _io.BytesIO(data))
            d = tarfile.TarInfo("somedir")
            d.type = tarfile.DIRTYPE
            t.addfile(d)
        got = list(shard_samples(str(path)))
        assert [(s["__key__"], sorted(k for k in s if not k.startswith("__"))) for s in got] == [
            ("d" * 120 + "/s", ["1.cls", "1.png"]), ("b", ["jpg"])]
    (tmp_path / "junk.tar").write_bytes(b"hello" * 300)
    with pytest.raises(TarError, match="junk.tar: bad tar header"):
        list(shard_samples(str(tmp_path / "junk.tar")))
    data = (tmp_path / f"{tarfile.GNU_FORMAT}.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:1100])
    with pytest.raises(TarError, match="cut.tar: truncated"):
        list(shard_samples(str(tmp_path / "cut.tar")))
