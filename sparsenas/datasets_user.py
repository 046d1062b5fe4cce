"""A user's own data without code: `npz` (arrays in one NumPy archive) and `imagefolder` (a tree of image
files, one sub-folder per class, read with Pillow), registered by sparsenas/data.py; and `tensors`, the form
of a split every dataset returns. Both check their input and fail with one line
(ConfigError) naming what is wrong. Without a test split (`x_test`/`y_test`, `test/`) the validation split is
also the test split, so `test_acc` then equals `val_acc`."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError

SPLITS = ("train", "val", "test")
NPZ_ARRAYS = "x_train, y_train, x_val, y_val; optional x_test, y_test, classes"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def tensors(x: np.ndarray, y: np.ndarray, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as a dataset returns it: x float32 reshaped to (N, *shape), y int64."""
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).reshape(-1, *shape), torch.as_tensor(
        np.asarray(y, dtype=np.int64))


def require(path: str | None, name: str, expected: str) -> Path:
    """`data.path` of dataset `name`, which must exist; else one line saying what was `expected` there."""
    if not path:
        raise ConfigError(f"dataset {name!r} needs data.path ({expected}); nothing is downloaded")
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"dataset {name!r}: {p} does not exist (expected {expected})")
    return p


def _npz_arrays(p: Path, where: str) -> dict[str, np.ndarray]:
    try:
        archive = np.load(p, allow_pickle=False)  # an object array (a pickle) is refused, never run
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ConfigError(f"{where} is a single array, not an .npz archive (needs {NPZ_ARRAYS})")
        with archive:
            return {k: archive[k] for k in archive.files}
    except (ValueError, OSError, EOFError) as e:
        raise ConfigError(f"{where} is not an .npz of numeric arrays ({e})".splitlines()[0]) from None


def _features(x: np.ndarray, name: str, where: str) -> np.ndarray:
    """x as float32 (N, C, H, W) or (N, D); uint8 pixels are scaled to [0, 1]."""
    if x.dtype.kind not in "biuf":
        raise ConfigError(f"{where}: {name} must be numeric, got dtype {x.dtype}")
    if x.ndim not in (2, 3, 4):
        raise ConfigError(f"{where}: {name} has shape {x.shape}; expected (N, C, H, W), (N, H, W) or (N, D)")
    if len(x) == 0:
        raise ConfigError(f"{where}: {name} is empty")
    if x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        raise ConfigError(f"{where}: {name} has shape {x.shape}, channels last; store it as (N, C, H, W) "
                          f"(e.g. x.transpose(0, 3, 1, 2))")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ConfigError(f"{where}: {name} holds NaN or infinite values")
    x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x
    return x[:, None] if x.ndim == 3 else x


def _labels(y: np.ndarray, name: str, n: int, where: str) -> np.ndarray:
    y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or y.dtype.kind not in "biuf":
        raise ConfigError(f"{where}: {name} must be a 1-D array of class indices, got {y.dtype} {y.shape}")
    if len(y) != n:
        raise ConfigError(f"{where}: {name} has {len(y)} labels for {n} examples")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise ConfigError(f"{where}: {name} must hold integer class indices (found NaN or a fraction)")
    if y.min() < 0:
        raise ConfigError(f"{where}: {name} holds label {y.min():g}; labels are class indices 0, 1, ...")
    return y.astype(np.int64)


def npz(path, val_fraction, test_fraction):
    """`data.path`: an .npz with x_train, y_train, x_val, y_val (optionally x_test, y_test, and `classes`, the
    class names, whose length is the number of classes; else it is max(y_train) + 1). x: (N, C, H, W),
    (N, H, W) or (N, D). Read with allow_pickle=False."""
    p = require(path, "npz", f"an .npz with {NPZ_ARRAYS}")
    where = f"dataset 'npz': {p}"
    arrays = _npz_arrays(p, where)
    need = [f"{a}_{s}" for s in ("train", "val") for a in "xy"]
    need += [f"{a}_test" for a in "xy" if any(f"{b}_test" in arrays for b in "xy")]
    missing = [k for k in need if k not in arrays]
    if missing:
        raise ConfigError(f"{where} has no {missing[0]} (needs {NPZ_ARRAYS})")
    splits = {}
    for s in (s for s in SPLITS if f"x_{s}" in arrays):
        x = _features(arrays[f"x_{s}"], f"x_{s}", where)
        splits[s] = (x, _labels(arrays[f"y_{s}"], f"y_{s}", len(x), where))
        if x.shape[1:] != splits["train"][0].shape[1:]:
            raise ConfigError(f"{where}: x_{s} has examples of shape {x.shape[1:]} but x_train of shape "
                              f"{splits['train'][0].shape[1:]}")
    if "classes" in arrays and (arrays["classes"].ndim != 1 or len(arrays["classes"]) < 2):
        raise ConfigError(f"{where}: classes must be a 1-D array of at least 2 class names")
    num_classes = len(arrays["classes"]) if "classes" in arrays else int(splits["train"][1].max()) + 1
    for s, (_, y) in splits.items():
        if y.max() >= num_classes:
            source = "`classes`" if "classes" in arrays else "y_train"
            raise ConfigError(f"{where}: y_{s} holds label {y.max()}, outside the {num_classes} classes "
                              f"0..{num_classes - 1} of {source}")
    shape = splits["train"][0].shape[1:]
    train, val = (tensors(*splits[s], shape) for s in ("train", "val"))
    return (train, val, tensors(*splits["test"], shape) if "test" in splits else val), num_classes


def _image_files(folder: Path, classes: list[str] | None, where: str) -> tuple[list[str], list[tuple[Path, int]]]:
    """The class names (those of `folder` when `classes` is None) and the (file, label) pairs under `folder`,
    the classes in turn."""
    names = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = names
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise ConfigError(f"{where}: {folder.name}/{unknown[0]} is a class that train/ does not have")
    files = []
    for name in names:
        found = sorted(f for f in (folder / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not found and folder.name == "train":
            raise ConfigError(f"{where}: train/{name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files.append([(f, classes.index(name)) for f in found])
    if not any(files):
        raise ConfigError(f"{where}: {folder.name}/ holds no images in class sub-folders")
    return classes, interleaved(files)


def interleaved(groups: list[list]) -> list:
    """The items of every group taken in turn (a1 b1 c1 a2 b2 …), so that any prefix holds every group alike."""
    return [item for row in itertools.zip_longest(*groups) for item in row if item is not None]


def _pixels(file: Path, image_size: int | None, where: str) -> np.ndarray:
    """One image as uint8 (H, W) for grey levels or (H, W, 3), resized to image_size² when given."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            im = im.convert("L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB")
            if image_size:
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ConfigError(f"{where}: cannot read {file} ({e})".splitlines()[0]) from None


def imagefolder(path, val_fraction, test_fraction, image_size=None, limit=None):
    """`data.path`: a folder with train/, val/ and optionally test/, each with one sub-folder of images per
    class (the class names are train/'s, sorted). Images of different sizes need `data.image_size`; grey
    images stay one channel unless the tree also holds colour ones. Pixels are scaled to [0, 1]. Training
    images are ordered by taking the classes in turn; with `limit` only the first `limit` are read."""
    root = require(path, "imagefolder", "a folder with train/ and val/, one sub-folder per class")
    where = f"dataset 'imagefolder': {root}"
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ConfigError(f"{where} has no {split}/ folder (needs train/ and val/, optional test/)")
    classes, files = _image_files(root / "train", None, where)
    if len(classes) < 2:
        raise ConfigError(f"{where}: train/ has {len(classes)} class sub-folder(s); at least 2 are needed")
    parts = {"train": files[:limit] if limit else files}
    for split in ("val", "test"):
        if (root / split).is_dir():
            parts[split] = _image_files(root / split, classes, where)[1]
    pixels = {s: [_pixels(f, image_size, where) for f, _ in fs] for s, fs in parts.items()}
    everything = [a for arrays in pixels.values() for a in arrays]
    sizes = sorted({a.shape[:2] for a in everything})
    if len(sizes) > 1:
        raise ConfigError(f"{where}: images differ in size ({sizes[0]} and {sizes[-1]}); set data.image_size")
    colour = any(a.ndim == 3 for a in everything)

    def splittensors(split):
        x = np.stack([np.repeat(a[..., None], 3, -1) if colour and a.ndim == 2 else a for a in pixels[split]])
        x = x.transpose(0, 3, 1, 2) if colour else x[:, None]
        return tensors(x.astype(np.float32) / 255, np.array([label for _, label in parts[split]]), x.shape[1:])

    train, val = splittensors("train"), splittensors("val")
    return (train, val, splittensors("test") if "test" in pixels else val), len(classes)
