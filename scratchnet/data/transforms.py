"""The paper's preprocessing, vectorised over the whole batch and run where the batch lives (CPU or GPU).

- ``normalize``: uint8 pixels to floats with zero mean and unit variance per channel.
- ``random_crop_flip``: the "C10+" augmentation: pad 4 pixels on each side, crop a random
  32x32 window, and flip half the images left to right. The random choices come
  from a NumPy generator, so a seed gives the same batches on the CPU and the GPU.

Padding comes after normalising, so the default fill of 0 is the dataset's mean colour,
as in the paper's code (fb.resnet.torch). torchvision pads the uint8 image, with black;
``random_crop_flip(x, rng, fill=black_fill(mean, std))`` does the same here.
"""
import numpy as np

from ..backend import get_array_module, to_numpy


def normalize(images, mean, std, dtype=np.float32):
    """images: uint8 (N, C, H, W); mean, std: per channel on the 0..255 scale -> (N, C, H, W) floats."""
    xp = get_array_module(images)
    mean = xp.asarray(mean, dtype=dtype).reshape(1, -1, 1, 1)
    std = xp.asarray(std, dtype=dtype).reshape(1, -1, 1, 1)
    return (images.astype(dtype) - mean) / std


def black_fill(mean, std, dtype=np.float32):
    """What ``normalize`` makes of a black pixel, (0 - mean) / std per channel: a tuple of C floats.

    As ``random_crop_flip``'s fill, it pads with black, as torchvision does, instead of the mean colour.
    """
    black = np.zeros((1, len(mean), 1, 1), dtype=np.uint8)
    return tuple(float(v) for v in normalize(black, mean, std, dtype).ravel())


def random_crop_flip(x, rng, padding=4, fill=0.0):
    """x: (N, C, H, W) -> (N, C, H, W): each image padded, randomly cropped and maybe mirrored.

    fill: the padded pixels' value, in the units of x: a scalar or one value per channel.
    On normalised images the default 0 is the mean colour (the paper's choice);
    ``black_fill(mean, std)`` is black (torchvision's).
    One fancy-indexing gather does all images at once: image n's output pixel
    (i, j) is padded pixel (top[n] + i, left[n] + j), with j read backwards for a flip.
    rng: a NumPy Generator (so a seed gives the same crops on the CPU and the GPU); a CuPy one works too.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    fill = xp.asarray(fill, dtype=x.dtype)
    if fill.size not in (1, C):
        raise ValueError(f"fill must be a scalar or one value per channel ({C}), got {fill.size} values")
    top = to_numpy(rng.integers(0, 2 * padding + 1, size=N))     # a few numbers per image: index them on the host
    left = to_numpy(rng.integers(0, 2 * padding + 1, size=N))
    flip = to_numpy(rng.random(N)) < 0.5
    rows = top[:, None] + np.arange(H)                      # (N, H)
    cols = left[:, None] + np.arange(W)                     # (N, W)
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    padded = xp.empty((N, C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    padded[...] = fill.reshape(1, -1, 1, 1)
    padded[:, :, padding:padding + H, padding:padding + W] = x
    n = xp.arange(N)[:, None, None, None]
    c = xp.arange(C)[None, :, None, None]
    return padded[n, c, xp.asarray(rows)[:, None, :, None], xp.asarray(cols)[:, None, None, :]]
