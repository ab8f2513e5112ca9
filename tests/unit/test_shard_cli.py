"""`acl-dist shard` end to end through its argparse registration, on a tiny folder and a built-in set."""

import argparse
import os

import numpy as np
from PIL import Image

from acl_dist.data.shards import Manifest, verify_shards
from acl_dist.tools.shard import register


def run(argv):
    parser = argparse.ArgumentParser(prog="acl-dist")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_folder_to_shards(tmp_path, capsys):
    src = tmp_path / "src"
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((20, 12, 3), 40 * i, np.uint8)).save(src / cls / f"{i}.jpg")
    (src / "b" / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    out = tmp_path / "out"
    code = run(["shard", str(src), str(out), "--max-count", "4", "--format", "webp", "--resolution", "8",
                "--no-progress"])
    assert code == 0
    m = Manifest.load(out / "manifest.json")
    assert m.count == 6 and [s.count for s in m.shards] == [4, 2]
    assert m.image_format == "webp" and m.resolution == 8 and m.class_names == ["a", "b"]
    assert verify_shards(out / "manifest.json") == []
    printed = capsys.readouterr().out
    assert "6 samples in 2 shards" in printed and "1 bad files skipped" in printed and "bad.jpg" in printed


def test_builtin_and_errors(tmp_path, capsys):
    assert run(["shard", "builtin:digits", str(tmp_path / "d"), "--max-count", "900", "--no-progress"]) == 0
    assert [s.count for s in Manifest.load(tmp_path / "d" / "manifest.json").shards] == [900, 897]
    assert run(["shard", "builtin:nope", str(tmp_path / "x"), "--no-progress"]) == 2
    assert run(["shard", str(tmp_path / "missing"), str(tmp_path / "y"), "--no-progress"]) == 2
    assert "unknown built-in" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "x")


def test_verify_shards_says_which_shard_changed(tmp_path, capsys):
    out = tmp_path / "d"
    assert run(["shard", "builtin:digits", str(out), "--max-count", "600", "--no-progress"]) == 0
    capsys.readouterr()
    assert run(["verify-shards", str(out)]) == 0 and "matches" in capsys.readouterr().out
    with open(out / "shard-000001.tar", "r+b") as f:  # one byte changed, as a bad copy would
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    assert run(["verify-shards", str(out)]) == 3
    assert "shard-000001.tar" in capsys.readouterr().out
    assert run(["verify-shards", str(tmp_path / "nothing")]) == 2
