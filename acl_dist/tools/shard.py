"""``acl-dist shard SOURCE OUT_DIR``: write WebDataset shards from a folder, numpy file, built-in set or videos;
``acl-dist verify-shards DIR``: check shards against their manifest (after a copy to a cluster, say).

Kept apart from ``cli.py`` so the sub-command's options live next to the code they drive; ``cli.py`` only
calls :func:`register`.
"""

from __future__ import annotations

import argparse
import logging
import os

from acl_dist.data.shard_inputs import INPUT_KINDS, open_input
from acl_dist.data.shards import IMAGE_FORMATS, verify_shards, write_shards

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``shard`` sub-command; its handler is ``args.func`` (= :func:`run_shard`)."""
    p = subparsers.add_parser(
        "shard",
        help="write WebDataset tar shards (+ manifest.json) from images, numpy, builtin:NAME or videos",
        description="SOURCE: an image folder (class sub-folders give labels), a .npz/.npy file, a video "
        "file or folder of videos, or builtin:digits / builtin:mnist5k / builtin:mnist5k-heldout / builtin:lfw. "
        "Unreadable files are skipped and listed.",
    )
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--kind", choices=INPUT_KINDS, default="auto", help="what SOURCE is (default: guess)")
    p.add_argument("--max-count", type=int, default=10000, help="samples per shard at most (default 10000)")
    p.add_argument("--max-size-mb", type=float, default=256.0, help="shard size at most in MB (default 256)")
    p.add_argument("--format", choices=sorted(IMAGE_FORMATS), default="png", help="stored image format")
    p.add_argument("--quality", type=int, default=95, help="jpg/webp quality (default 95)")
    p.add_argument("--resolution", type=int, default=None, help="center-crop and resize to RxR when writing")
    p.add_argument("--fps", type=float, default=None, help="videos: frames per second to keep (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_shard)
    v = subparsers.add_parser(
        "verify-shards", help="check shards against their manifest.json (sizes and sha256): exit 0 intact, 3 not",
        description="Reads every shard DIR/manifest.json lists and compares its size and sha256 with the manifest's; "
        "names the shards that differ or are missing.")
    v.add_argument("dir", metavar="DIR", help="the folder holding manifest.json and the shards")
    v.set_defaults(func=run_verify)
    return p


def run_verify(args: argparse.Namespace) -> int:
    """0: every shard matches its manifest entry; 3 (a data problem): some differ or are missing; 2: no manifest."""
    manifest = os.path.join(args.dir, "manifest.json")
    if not os.path.isfile(manifest):
        print(f"verify-shards: {manifest} does not exist (acl-dist shard writes it beside the shards)")
        return 2
    bad = verify_shards(manifest)
    if bad:
        print(f"verify-shards: {len(bad)} shards differ from {manifest} or are missing: {', '.join(bad[:20])}"
              f"{' ...' if len(bad) > 20 else ''}; write or copy them again")
        return 3
    print(f"verify-shards: every shard of {manifest} matches its size and sha256")
    return 0


def run_shard(args: argparse.Namespace) -> int:
    """Run the sub-command; returns the exit code (0 ok, 1 nothing written, 2 bad arguments)."""
    if args.max_count < 1 or args.max_size_mb <= 0 or (args.resolution is not None and args.resolution < 1):
        print("shard: --max-count, --max-size-mb and --resolution must be positive")
        return 2
    try:
        source = open_input(args.source, args.kind, fps=args.fps, size=args.resolution)  # the shards' input
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"shard: {e}")
        return 2
    total = len(source) or None  # videos: unknown until decoded
    manifest = write_shards(
        source, args.out_dir, max_count=args.max_count, max_bytes=int(args.max_size_mb * (1 << 20)),
        image_format=args.format, resolution=args.resolution, quality=args.quality,
        class_names=source.class_names, source=f"{source.name}:{args.source}", total=total,
        progress=not args.no_progress,
    )
    print(f"shard: {manifest.count} samples in {len(manifest.shards)} shards -> {args.out_dir}/manifest.json"
          f" ({len(source.skipped)} bad files skipped)")
    for bad in source.skipped[:20]:
        print(f"  skipped {bad.path}: {bad.reason}")
    if len(source.skipped) > 20:
        print(f"  ... and {len(source.skipped) - 20} more (see the log)")
    return 0 if manifest.count else 1
