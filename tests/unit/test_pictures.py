"""Sample grids, interpolation strips, curves and videos written as files a viewer can open."""

import numpy as np
import pytest
import torch
from PIL import Image

from acl_dist.eval.tracker import read_curve
from acl_dist.pictures import interpolation_strip, plot_metrics, save_grid, save_samples, save_video


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


def test_the_evaluation_history_reads_back_and_plots_one_panel_per_metric(tmp_path):
    csv = tmp_path / "eval.csv"
    csv.write_text("step,fid,kid_mean,kid_std\n100,80.5,0.2,0.01\n200,40.25,,\n300,30.0,0.1,0.01\n")
    rows = read_curve(str(csv))
    assert rows[1] == {"step": 200.0, "fid": 40.25}  # an empty cell is a value the row lacks
    path = plot_metrics(rows, str(tmp_path / "eval.png"))
    with Image.open(path) as im:  # two panels (fid, kid_mean) side by side
        assert im.format == "PNG" and im.size == (800, 320)  # 4 x 3.2 inches a panel at 100 dpi


def test_samples_are_a_grid_of_images_or_a_scatter_of_points(tmp_path):
    grid = save_samples(torch.zeros(4, 1, 8, 8), str(tmp_path / "g" / "grid.png"))
    with Image.open(grid) as im:
        assert im.size == (2 * 9 + 1, 2 * 9 + 1)  # 2 x 2 images of 8 px, 1 px padding
    scatter = save_samples(torch.randn(50, 2), str(tmp_path / "s" / "points.png"), reference=torch.randn(80, 2))
    with Image.open(scatter) as im:
        assert im.size == (400, 400)


def test_save_video_encodes_frames(tmp_path):
    frames = [torch.full((1, 16, 16), v) for v in np.linspace(-1, 1, 5)]
    path = tmp_path / "walk.mp4"
    assert save_video(iter(frames), str(path), fps=5) == 5
    assert path.stat().st_size > 0 and path.read_bytes()[4:8] == b"ftyp"


@pytest.mark.parametrize("b,c,nrow,padding", [(1, 1, 8, 2), (5, 1, 2, 1), (64, 3, 8, 2), (7, 3, 3, 0), (3, 1, 8, 4)])
def test_tile_lays_images_out_as_torchvision_make_grid(b, c, nrow, padding):
    """Our grid (no torchvision import at start-up) is torchvision's make_grid, value for value."""
    from torchvision.utils import make_grid

    from acl_dist.pictures import tile

    x = torch.rand(b, c, 5, 6) * 2 - 1
    assert torch.equal(tile(x, nrow, padding, -1.0), make_grid(x, nrow=nrow, padding=padding, pad_value=-1.0))


def test_sample_grids_have_the_bytes_torchvision_save_image_wrote(tmp_path):
    from torchvision.utils import save_image

    from acl_dist.pictures import save_samples

    x = torch.rand(9, 1, 6, 6) * 2.2 - 1.1  # beyond [-1, 1] too: clamped first, as before
    save_samples(x, str(tmp_path / "ours.png"))
    save_image((x.clamp(-1, 1) + 1) / 2, str(tmp_path / "theirs.png"), nrow=3, padding=1)
    with Image.open(tmp_path / "ours.png") as ours, Image.open(tmp_path / "theirs.png") as theirs:
        assert np.array_equal(np.asarray(ours.convert("RGB")), np.asarray(theirs.convert("RGB")))


@pytest.mark.slow  # starts a process
def test_starting_a_run_imports_no_torchvision():
    """torchvision.utils imports torchvision's models and torch._dynamo: 1.8 s of every training process."""
    from tests.images import imports_module

    assert not imports_module("import acl_dist.cli; from acl_dist.training.trainer import Trainer", "torchvision")
