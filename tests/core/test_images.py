import numpy as np
import torch

from ddpm.core.images import image_grid, rows_image, to_model_range, to_uint8


def test_image_grid_layout():
    grid = image_grid(np.zeros((5, 4, 4, 1), dtype=np.uint8), scale=1)
    assert grid.shape == (2 * 6 + 2, 3 * 6 + 2, 1)
    assert (grid[:2] == 255).all() and (grid[2:6, 2:6] == 0).all()  # a white border, then the first image
    assert (grid[8:12, 14:18] == 255).all()  # the sixth cell of a 2 × 3 grid of five images stays white


def test_rows_image_places_row_r_column_c():
    rows = [np.stack([np.full((2, 2, 1), 10 * r + c, dtype=np.uint8) for c in range(3)]) for r in range(2)]
    out = rows_image(rows, scale=1)
    assert out.shape == (2 * 4 + 2, 3 * 4 + 2, 1)
    assert out[2 + 4, 2 + 2 * 4, 0] == 12  # row 1, column 2


def test_uint8_round_trip_is_exact():
    levels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    assert torch.equal(to_uint8(to_model_range(levels)), levels.permute(0, 2, 3, 1))


def test_small_images_are_upscaled_nearest_to_at_least_48_pixels():
    from ddpm.core.images import display_scale

    assert [display_scale(s) for s in (8, 32, 48, 256)] == [6, 2, 1, 1]
    digit = np.arange(64, dtype=np.uint8).reshape(1, 8, 8, 1)
    grid = image_grid(digit)
    assert grid.shape == (48 + 4, 48 + 4, 1)  # one 8×8 image ×6, 2-pixel white border
    np.testing.assert_array_equal(grid[2:50, 2:50, 0], np.kron(digit[0, :, :, 0], np.ones((6, 6), np.uint8)))
