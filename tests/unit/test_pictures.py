"""Sample grids, interpolation strips, curves and videos written as files a viewer can open."""

import numpy as np
import torch
from PIL import Image

from acl_dist.eval.pictures import interpolation_strip, plot_curve, save_grid, save_video


def test_save_grid_writes_png_of_the_right_size_and_values(tmp_path):
    images = torch.full((10, 1, 8, 8), -1.0)
    images[3] = 1.0  # one white tile: the 4th of the first row
    path = save_grid(images, str(tmp_path / "sub" / "grid.png"), nrow=5, padding=2)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (5 * 8 + 6 * 2, 2 * 8 + 3 * 2)  # (width, height) with 2 px padding around tiles
        px = np.asarray(im)
    x0 = 2 + 3 * (8 + 2)
    assert (px[2:10, x0 : x0 + 8] == 255).all()
    assert px.sum() == 255 * 3 * 64  # everything else black


def test_interpolation_strip_one_row_per_interpolation(tmp_path):
    rows = [torch.rand(6, 3, 16, 16) * 2 - 1 for _ in range(3)]
    path = interpolation_strip(rows, str(tmp_path / "interp.png"), padding=0)
    with Image.open(path) as im:
        assert im.size == (6 * 16, 3 * 16)
        px = np.asarray(im)
    expected = ((rows[1][2] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert (px[16:32, 32:48] == expected).all()


def test_plot_curve_from_csv(tmp_path):
    csv = tmp_path / "fid.csv"
    csv.write_text("step,fid\n100,80.5\n200,40.25\n300,30.0\n")
    path = plot_curve(str(csv), str(tmp_path / "fid.png"))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def test_save_video_encodes_frames(tmp_path):
    frames = [torch.full((1, 16, 16), v) for v in np.linspace(-1, 1, 5)]
    path = tmp_path / "walk.mp4"
    assert save_video(iter(frames), str(path), fps=5) == 5
    assert path.stat().st_size > 0 and path.read_bytes()[4:8] == b"ftyp"
