"""Two real processes in a gloo process group, each streaming its rank's share of real shards.

Together they must see every sample exactly once per epoch, with the same number of batches, and the
collectives (one all_reduce per batch, as DDP does) must never wait on a rank that ran out of data.
"""

import json
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from acl_dist.data.shards import Sample, write_shards
from acl_dist.data.sources.shards import ShardOptions
from acl_dist.data.stream import build_shard_stream

WORLD, EPOCHS, BATCH = 2, 2, 5


def _worker(rank, manifest, init_file, out_dir):
    """One rank: join the group, stream two epochs, write what it saw."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    cfg = ShardOptions(source="shards", shards=manifest, num_workers=1, shuffle_buffer=16)
    stream = build_shard_stream(cfg, resolution=8, channels=1, batch_size=BATCH, seed=7, rank=rank,
                                world_size=WORLD, with_labels=True)
    labels, it = [], iter(stream)
    for _ in range(EPOCHS * stream.batches_per_epoch):
        batch = next(it)
        step = torch.ones(1)
        dist.all_reduce(step)  # a DDP-like collective per batch: hangs if one rank stops early
        labels.append(batch["label"].tolist())
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"labels": labels, "bpe": stream.batches_per_epoch, "position": stream.position}, f)
    dist.destroy_process_group()


def test_two_processes_partition_each_epoch(tmp_path):
    n = 80  # 8 shards of 10; 80 / (2 ranks * 5) = 8 batches per rank per epoch
    write_shards((Sample(f"k{i:03d}", np.full((8, 8), i, np.uint8), i) for i in range(n)), tmp_path / "s",
                 max_count=10, progress=False)
    ctx = mp.start_processes(_worker, args=(str(tmp_path / "s" / "manifest.json"), str(tmp_path / "init"),
                                            str(tmp_path)), nprocs=WORLD, join=False,
                             start_method="fork")  # real processes; fork skips re-importing torch (~10 s each)
    deadline = time.time() + 60
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            raise TimeoutError("ranks did not finish in 60 s (a rank waiting on the other?)")
    results = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(WORLD)]
    assert [r["bpe"] for r in results] == [8, 8]
    assert all(r["position"] == [EPOCHS, 0] for r in results)
    for e in range(EPOCHS):
        seen = [x for r in results for b in r["labels"][e * 8:(e + 1) * 8] for x in b]
        assert sorted(seen) == list(range(n)), f"epoch {e}: not every sample exactly once"
