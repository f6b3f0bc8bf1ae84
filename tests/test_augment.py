"""Batched augmentation: shapes, the flip switch, bounded shifts and the geometry of rotations."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from inas_plugins.training.augment import BatchAugment

CPU = torch.device("cpu")



def _images(n: int = 64, channels: int = 3, height: int = 8, width: int = 8) -> torch.Tensor:
    return torch.randn(n, channels, height, width, generator=torch.Generator().manual_seed(0))


def _zero_filled_shift(image: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Reference: move content right by dx and down by dy, filling with zeros."""
    _, height, width = image.shape
    out = torch.zeros_like(image)
    src_y = slice(max(0, -dy), min(height, height - dy))
    dst_y = slice(max(0, dy), min(height, height + dy))
    src_x = slice(max(0, -dx), min(width, width - dx))
    dst_x = slice(max(0, dx), min(width, width + dx))
    out[:, dst_y, dst_x] = image[:, src_y, src_x]
    return out


@pytest.mark.parametrize("shape", [(16, 3, 8, 8), (5, 1, 12, 7)])
def test_augmentation_keeps_shape_dtype_and_device(shape):
    x = torch.randn(*shape)
    out = BatchAugment()(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert not torch.equal(out, x)


def test_flips_off_never_flips():
    augment = BatchAugment(flips=False)
    params = augment.sample(10_000, CPU, torch.Generator().manual_seed(0))
    assert not params.flip.any()
    x = _images()
    still = BatchAugment(flips=False, max_shift=0, max_rotation=0.0)
    params = replace(still.sample(x.shape[0], CPU), flip=torch.zeros(x.shape[0], dtype=torch.bool))
    torch.testing.assert_close(still.apply(x, params), x, atol=1e-5, rtol=0)


def test_flips_on_mirrors_about_half_and_exactly():
    augment = BatchAugment(flips=True, max_shift=0, max_rotation=0.0)
    params = augment.sample(10_000, CPU, torch.Generator().manual_seed(0))
    assert 0.45 < params.flip.float().mean().item() < 0.55
    x = _images(n=200)
    params = augment.sample(x.shape[0], CPU, torch.Generator().manual_seed(3))
    out = augment.apply(x, params)
    expected = torch.where(params.flip.view(-1, 1, 1, 1), x.flip(-1), x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_shifts_are_bounded_integer_translations():
    augment = BatchAugment(flips=False, max_shift=4, max_rotation=0.0)
    params = augment.sample(5_000, CPU, torch.Generator().manual_seed(0))
    for shift in (params.shift_x, params.shift_y):
        assert shift.abs().max().item() == 4
        assert set(shift.unique().tolist()) == set(range(-4, 5))
    x = _images(n=100, height=12, width=10)
    params = augment.sample(x.shape[0], CPU, torch.Generator().manual_seed(5))
    out = augment.apply(x, params)
    for i in range(x.shape[0]):
        reference = _zero_filled_shift(x[i], int(params.shift_x[i]), int(params.shift_y[i]))
        torch.testing.assert_close(out[i], reference, atol=1e-5, rtol=0)


def test_rotation_angles_bounded_and_geometry_counter_clockwise():
    augment = BatchAugment(flips=False, max_shift=0, max_rotation=15.0)
    angles = augment.sample(5_000, CPU, torch.Generator().manual_seed(0)).angle
    assert angles.abs().max().item() <= 15.0 and angles.abs().max().item() > 14.0
    square = _images(n=4)
    turn = BatchAugment(flips=False, max_shift=0, max_rotation=90.0)
    params = replace(turn.sample(4, CPU), angle=torch.full((4,), 90.0))
    torch.testing.assert_close(turn.apply(square, params), torch.rot90(square, 1, dims=(2, 3)), atol=1e-4, rtol=0)


def test_same_generator_seed_same_augmentation_and_identity_passthrough():
    x = _images()
    augment = BatchAugment()
    first = augment(x, torch.Generator().manual_seed(7))
    second = augment(x, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    identity = BatchAugment(flips=False, max_shift=0, max_rotation=0.0)
    assert identity.is_identity and identity(x) is x


@pytest.mark.parametrize("kwargs", [{"max_shift": -1}, {"max_rotation": -5.0}, {"max_rotation": 270.0}])
def test_bad_settings_raise(kwargs):
    with pytest.raises(ValueError):
        BatchAugment(**kwargs)


# --------------------------------------------------------------------------- reflect shifts and cutout


def _reflect_reference(image: torch.Tensor, dx: int, dy: int, flip: bool, pad: int) -> torch.Tensor:
    """Brute force, one image: numpy's reflect padding, a crop moved by (dx, dy), then the mirror."""
    padded = np.pad(image.numpy(), ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    _, height, width = image.shape
    out = padded[:, pad - dy:pad - dy + height, pad - dx:pad - dx + width]
    return torch.from_numpy(np.ascontiguousarray(out[:, :, ::-1] if flip else out))


def test_reflect_shifts_move_whole_pixels_over_a_reflected_border():
    augment = BatchAugment(flips=True, max_shift=3, max_rotation=0.0, shift_mode="reflect")
    x = _images(n=60, height=9, width=7)
    params = augment.sample(x.shape[0], CPU, torch.Generator().manual_seed(4))
    out = augment.apply(x, params)
    assert out.is_contiguous()  # a strided view crashed torch's CPU convolutions (below)
    for i in range(x.shape[0]):
        reference = _reflect_reference(x[i], int(params.shift_x[i]), int(params.shift_y[i]), bool(params.flip[i]), 3)
        assert torch.equal(out[i], reference)  # exact: no resampling


def test_cutout_zeroes_one_clipped_square_per_image():
    augment = BatchAugment(flips=False, max_shift=0, max_rotation=0.0, shift_mode="reflect", cutout=4)
    x = _images(n=50, height=10, width=10) + 10.0  # no pixel is zero before the cutout
    params = augment.sample(x.shape[0], CPU, torch.Generator().manual_seed(2), size=(10, 10))
    out = augment.apply(x, params)
    for i in range(x.shape[0]):
        expected = x[i].clone()
        top, left = int(params.cut_y[i]) - 2, int(params.cut_x[i]) - 2
        expected[:, max(0, top):max(0, top + 4), max(0, left):max(0, left + 4)] = 0.0
        assert torch.equal(out[i], expected)
    with pytest.raises(ValueError, match="cutout"):
        BatchAugment(cutout=-1)


def test_the_recipe_sizes_are_fractions_of_the_image_side():
    from inas_plugins.training import TrainRecipe

    recipe = TrainRecipe(shift=0.125, cutout=0.25, rotation=0.0, shift_mode="reflect")
    assert BatchAugment.for_images(recipe, 32, 32).max_shift == 4 and BatchAugment.for_images(recipe, 32, 32).cutout == 8
    assert BatchAugment.for_images(recipe, 8, 12).max_shift == 1 and BatchAugment.for_images(recipe, 8, 12).cutout == 2
    assert BatchAugment.for_images(TrainRecipe(cutout=0.0), 32, 32).cutout == 0


@pytest.mark.slow
def test_training_on_reflect_shifted_small_images_does_not_crash_the_process():
    """The shifted batch once left as a permuted view; torch's CPU convolutions of a network with
    strided stacks then corrupted the heap (the process aborted). Run in a child process."""
    script = """
import torch, torch.nn.functional as F
from inas_plugins.models import build_inas_resnet
from inas_plugins.space import Arch
from inas_plugins.training.augment import BatchAugment
torch.set_num_threads(1)
torch.manual_seed(0)
augment = BatchAugment(flips=True, max_shift=2, max_rotation=0.0, shift_mode="reflect")
model = build_inas_resnet(Arch(1, 3), num_classes=4, base_width=4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(50):
    loss = F.cross_entropy(model(augment(torch.randn(16, 3, 16, 16))), torch.randint(0, 4, (16,)))
    optimizer.zero_grad(); loss.backward(); optimizer.step()
print("trained")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "trained" in result.stdout, result.stderr[-500:]
