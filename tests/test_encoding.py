"""The rate encoder: exact probabilities, the documented draw order, batch independence."""

import numpy as np
import pytest

from spikefab.sim.encoding import rate_encode


def test_draw_order_is_the_documented_one():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    spikes = rate_encode(images, steps=6, seed=42, indices=[7, 0, 9])
    for k, index in enumerate([7, 0, 9]):
        gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([42, index])))
        draws = gen.integers(0, 255, size=(6, 20), dtype=np.uint8)
        assert np.array_equal(spikes[:, k], draws < images[k].reshape(-1))


def test_spikes_depend_only_on_seed_and_index():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(5, 30), dtype=np.uint8)
    together = rate_encode(images, 8, seed=3, indices=np.arange(10, 15))
    alone = rate_encode(images[2:3], 8, seed=3, indices=[12])
    assert np.array_equal(together[:, 2], alone[:, 0])
    assert not np.array_equal(rate_encode(images, 8, seed=4, indices=np.arange(10, 15)),
                              together)


def test_extreme_pixels_and_rate():
    images = np.array([[0, 255, 51]], dtype=np.uint8)
    spikes = rate_encode(images, steps=20000, seed=5)
    assert spikes[:, 0, 0].sum() == 0 and spikes[:, 0, 1].sum() == 20000
    rate = spikes[:, 0, 2].mean()  # p = 51/255 = 0.2; 5 sigma is about 0.014
    assert abs(rate - 0.2) < 0.014


@pytest.mark.parametrize("kwargs, message", [
    (dict(images=np.array([[256]]), steps=2, seed=0), r"pixels in \[0, 255\]"),
    (dict(images=np.array([[1.5]]), steps=2, seed=0), r"pixels in \[0, 255\]"),
    (dict(images=np.zeros((1, 3), np.uint8), steps=0, seed=0), "steps must be a positive"),
    (dict(images=np.zeros((1, 3), np.uint8), steps=2, seed=-1), "seed must be a non-negative"),
    (dict(images=np.zeros((2, 3), np.uint8), steps=2, seed=0, indices=[1]),
     r"indices must have one entry per image \(2\)"),
])
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rate_encode(**kwargs)
