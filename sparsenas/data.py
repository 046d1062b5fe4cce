"""Datasets as in-memory tensors. Nothing is ever downloaded: `digits` ships with scikit-learn, the
others are read from a local path given as `data.path` (`npz` and `imagefolder`, a user's own data, are read
by sparsenas/datasets_user.py). Options of every dataset: `limit`, `image_size`, `downsample`, `normalize` and
`augment` (random flips / crops of training batches, drawn from the trial's seeded generator).

A dataset is a function `(path, val_fraction, test_fraction) -> ((train, val, test), num_classes)`, each split
an (x, y) pair of tensors (`tensors`), registered with `@DATASETS.register(name)`; one that also takes an
`image_size` keyword resizes as it reads (others are resized afterwards)."""
from __future__ import annotations

import functools
import gzip
import inspect
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .datasets_user import imagefolder, npz, require, tensors
from .errors import ConfigError
from .registry import Registry

DATASETS: Registry = Registry("dataset")
DATASETS.register("npz")(npz)  # a user's own data, read by sparsenas/datasets_user.py
DATASETS.register("imagefolder")(imagefolder)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles containers of NumPy arrays and nothing else: `data.path` comes from a run's config.yaml on
    `--resume`, so a dataset pickle is input that must not be able to run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a NumPy array part")
        return super().find_class(module, name)


def load_arrays_pickle(f, where: str):
    """A pickle of NumPy arrays (in tuples, lists and dicts) from the open binary file `f`; anything else —
    another class, object arrays, a corrupt file — is a one-line ConfigError naming `where`."""
    try:
        data = _ArraysOnly(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError) as e:
        raise ConfigError(f"{where} is not a pickle of NumPy arrays ({e})".splitlines()[0]) from None

    def objects(x):
        if isinstance(x, np.ndarray):
            return x.dtype.hasobject
        items = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else ()
        return any(objects(v) for v in items)

    if objects(data):
        raise ConfigError(f"{where} holds object arrays; only numeric NumPy arrays are read")
    return data


AUGMENTATIONS = ("flip", "crop")  # data.augment: random horizontal flip; random crop after zero padding


@dataclass(frozen=True)
class Splits:
    """Train / validation / test tensors; x is (N, C, H, W) images or (N, D) features, float32; y int64.
    `augmentation` names the random transforms `augment` applies to a training batch."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    num_classes: int
    augmentation: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A training batch (N, C, H, W) with `augmentation` applied, its randomness drawn from `generator` (the
        trial's, so a seed gives the same batches); x itself when there is none."""
        if not self.augmentation:
            return x
        n, c, h, w = x.shape
        if "crop" in self.augmentation:  # pad by 1/8 of the smaller side, cut an h × w window at random
            pad = max(1, min(h, w) // 8)
            padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
            dy, dx = (torch.randint(0, 2 * pad + 1, (n, 1), generator=generator) for _ in range(2))
            rows, cols = dy + torch.arange(h), dx + torch.arange(w)
            x = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                       rows[:, None, :, None], cols[:, None, None, :]]
        if "flip" in self.augmentation:
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x


def _split(x, y, val_fraction: float, test_fraction: float, shape, seed: int = 0):
    """Fixed (seed 0) shuffle into train / val / test, so every trial sees the same split."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_test, n_val = int(round(test_fraction * len(y))), int(round(val_fraction * len(y)))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    if len(train) == 0:
        raise ConfigError("data.val_fraction + data.test_fraction leave no training data")
    return tuple(tensors(x[i], y[i], shape) for i in (train, val, test))


@DATASETS.register("digits")
def _digits(path, val_fraction, test_fraction):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _split(x / 16.0, y, val_fraction, test_fraction, (1, 8, 8)), 10


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / "MNIST" / "raw" / stem,
                      folder / "MNIST" / "raw" / f"{stem}.gz", folder / "raw" / stem, folder / "raw" / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise ConfigError(f"dataset 'mnist': {stem}[.gz] not found under {folder}")


@DATASETS.register("mnist")
def _mnist(path, val_fraction, test_fraction):
    """`data.path`: mnist.pkl.gz ((x, y) train/valid/test, x in [0, 1]) or torchvision's raw IDX folder.
    The file's own validation/test split is kept; `val_fraction`/`test_fraction` are unused here."""
    p = require(path, "mnist", "mnist.pkl.gz or a folder with the IDX files")
    shape = (1, 28, 28)
    if p.is_file():
        with gzip.open(p) as f:
            train, valid, test = load_arrays_pickle(f, f"dataset 'mnist': {p}")
        return tuple(tensors(x, y, shape) for x, y in (train, valid, test)), 10
    x = _read_idx(_find(p, "train-images-idx3-ubyte")) / 255.0
    y = _read_idx(_find(p, "train-labels-idx1-ubyte"))
    xt = _read_idx(_find(p, "t10k-images-idx3-ubyte")) / 255.0
    yt = _read_idx(_find(p, "t10k-labels-idx1-ubyte"))
    n_val = 10000
    return (tensors(x[:-n_val], y[:-n_val], shape), tensors(x[-n_val:], y[-n_val:], shape),
            tensors(xt, yt, shape)), 10


@DATASETS.register("cifar10")
def _cifar10(path, val_fraction, test_fraction):
    """`data.path`: torchvision's `cifar-10-batches-py` folder (or its parent). The last 5,000 training
    images are the validation split. Inputs are normalised per channel."""
    p = require(path, "cifar10", "torchvision's cifar-10-batches-py folder")
    if (p / "cifar-10-batches-py").is_dir():
        p = p / "cifar-10-batches-py"

    def batch(name):
        f = p / name
        if not f.exists():
            raise ConfigError(f"dataset 'cifar10': {f} not found")
        with open(f, "rb") as fh:
            d = load_arrays_pickle(fh, f"dataset 'cifar10': {f}")
        return np.asarray(d["data"], dtype=np.float32) / 255.0, np.asarray(d["labels"])

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x, y = np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])
    xt, yt = batch("test_batch")
    mean = x.reshape(-1, 3, 1024).mean(axis=(0, 2)).repeat(1024)
    std = x.reshape(-1, 3, 1024).std(axis=(0, 2)).repeat(1024)
    x, xt = (x - mean) / std, (xt - mean) / std
    shape = (3, 32, 32)
    return (tensors(x[:-5000], y[:-5000], shape), tensors(x[-5000:], y[-5000:], shape),
            tensors(xt, yt, shape)), 10


def _images_only(x: torch.Tensor, option: str) -> None:
    if x.dim() != 4:
        raise ConfigError(f"{option} needs images (N, C, H, W); the data are flat features of shape "
                          f"{tuple(x.shape[1:])}")


def _pooled(split: tuple[torch.Tensor, torch.Tensor], factor: int):
    x, y = split
    _images_only(x, f"data.downsample={factor}")
    if factor > min(x.shape[-2:]):
        raise ConfigError(f"data.downsample={factor} exceeds the image size {tuple(x.shape[-2:])}")
    return torch.nn.functional.avg_pool2d(x, factor, ceil_mode=True).contiguous(), y


def _resized(split: tuple[torch.Tensor, torch.Tensor], size: int):
    x, y = split
    _images_only(x, f"data.image_size={size}")
    if tuple(x.shape[-2:]) == (size, size):
        return x, y
    return torch.nn.functional.interpolate(x, (size, size), mode="bilinear", antialias=True).contiguous(), y


def _normalised(train, val, test):
    """Every split standardised with the training split's mean and std per channel (images) or feature."""
    dims = (0, 2, 3) if train[0].dim() == 4 else (0,)
    mean, std = train[0].mean(dim=dims, keepdim=True), train[0].std(dim=dims, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant channel / feature stays centred
    return tuple(((x - mean) / std, y) for x, y in (train, val, test))


def _read(name, path, val_fraction, test_fraction, image_size, limit):
    """The loader's splits, and whether it resized them; `image_size` and `limit` go to loaders that take them
    (an image folder then reads only the images it keeps)."""
    loader = DATASETS.get(name)
    accepts = inspect.signature(loader).parameters
    options = {k: v for k, v in (("image_size", image_size), ("limit", limit)) if v and k in accepts}
    return loader(path, val_fraction, test_fraction, **options), "image_size" in options


@functools.lru_cache(maxsize=4)
def _cached(name, path, val_fraction, test_fraction, limit, downsample, image_size=None, normalize="none",
            augment=()) -> Splits:
    ((train, val, test), num_classes), resized = _read(name, path, val_fraction, test_fraction, image_size, limit)
    if limit:
        train = (train[0][:limit], train[1][:limit])
    if image_size and not resized:
        train, val, test = (_resized(s, image_size) for s in (train, val, test))
    if downsample > 1:  # e.g. MNIST 28×28 → 14×14 with 2: a DARTS supernet costs ~4× less per step
        train, val, test = (_pooled(s, downsample) for s in (train, val, test))
    if normalize == "dataset":
        train, val, test = _normalised(train, val, test)
    if augment:
        _images_only(train[0], f"data.augment={list(augment)}")
    return Splits(train, val, test, num_classes, augment)


def load_data(cfg: dict) -> Splits:
    """The splits for a `data` config section; loaded once per process and cached. `limit` keeps the first
    `limit` training examples (of an image folder: taken from the classes in turn); `image_size` resizes every image to that square size; `downsample` average-pools
    every image by that factor (1 = as is); `normalize: dataset` standardises with the training split's
    statistics; `augment` (flip, crop) transforms training batches (`Splits.augment`)."""
    augment = cfg.get("augment") or ()
    augment = (augment,) if isinstance(augment, str) else tuple(dict.fromkeys(augment))
    return _cached(cfg["name"], cfg.get("path"), cfg["val_fraction"], cfg["test_fraction"], cfg.get("limit"),
                   cfg.get("downsample", 1), cfg.get("image_size"), cfg.get("normalize", "none"), augment)
