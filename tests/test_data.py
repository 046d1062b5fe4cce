"""Dataset loading options shared by every space: `limit` and `downsample`."""
import pytest
import torch

from sparsenas.config import CORE, validate_section
from sparsenas.data import load_data
from sparsenas.errors import ConfigError


def data(**overrides):
    return load_data(validate_section("data", overrides, CORE["data"]))


def test_downsample_average_pools_every_split():
    full, half = data(), data(downsample=2)
    assert full.input_shape == (1, 8, 8) and half.input_shape == (1, 4, 4)
    for (x, y), (xd, yd) in zip((full.train, full.val, full.test), (half.train, half.val, half.test)):
        assert torch.equal(y, yd)
        assert torch.allclose(xd[:, :, 0, 0], x[:, :, :2, :2].mean(dim=(2, 3)))


def test_limit_keeps_the_first_training_examples_only():
    full, few = data(), data(limit=100)
    assert torch.equal(few.train[0], full.train[0][:100]) and torch.equal(few.val[1], full.val[1])


@pytest.mark.parametrize("bad", [0, 1.5, "2"])
def test_bad_downsample_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="downsample"):
        validate_section("data", {"downsample": bad}, CORE["data"])


def test_downsample_larger_than_the_image_is_a_config_error():
    with pytest.raises(ConfigError, match="exceeds"):
        data(downsample=16)
