"""A user's own data without code: `data.name: npz` and `data.name: imagefolder` run a search end to end; bad
input is one line and exit 2 before anything is written; augmentation is seeded and touches training batches
only; a dataset registered from a plug-in (`--allow-import`) is used like a built-in one."""
import re
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, cli
from sparsenas.config import CORE, validate_section
from sparsenas.data import Splits, load_data

TINY = ["--strategy", "random", "--budget", 1, "--set", "train.epochs=1", "--quiet"]
IMAGES = ["--space", "dass", "--set", "space.C=4", *TINY]


def arrays(shape, n=48, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, *shape)).astype(np.float32) + y.reshape(-1, *[1] * len(shape))
    return x, y


def write_npz(path, shape=(1, 8, 8), **changes):
    (xt, yt), (xv, yv) = arrays(shape), arrays(shape, n=24, seed=1)
    content = {"x_train": xt, "y_train": yt, "x_val": xv, "y_val": yv, **changes}
    np.savez(path, **{k: v for k, v in content.items() if v is not None})
    return path


def write_tree(root, sizes=((8, 8),), splits=(("train", 4), ("val", 2), ("test", 2)), mode="RGB"):
    colours = {"RGB": ["red", "blue"], "L": [30, 220]}[mode]
    for split, n in splits:
        for c, colour in enumerate(colours):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new(mode, sizes[i % len(sizes)], colour).save(folder / f"{i}.png")
    return root


def run_dirs(tmp_path):
    return list((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else []


def search(tmp_path, args, *data):
    sets = [a for item in data for a in ("--set", item)]
    return cli("search", *args, *sets, "--runs-dir", tmp_path / "runs")


# -- end to end ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8), (3, 8, 8)])
def test_npz_images_search_end_to_end(shape, tmp_path):
    path = write_npz(tmp_path / "d.npz", shape)
    assert search(tmp_path, IMAGES, "data.name=npz", f"data.path={path}", "data.augment=[flip, crop]") == 0
    assert len(run_dirs(tmp_path)) == 1 and list(run_dirs(tmp_path)[0].glob("trials.jsonl"))


@pytest.mark.parametrize("space", ["dass", "tas"])
def test_flat_features_on_a_convolutional_space_are_one_line_before_anything_is_written(space, tmp_path, capsys):
    path = write_npz(tmp_path / "d.npz", (10,))
    assert search(tmp_path, ["--space", space, "--strategy", "random", "--quiet"], "data.name=npz",
                  f"data.path={path}") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"space '{space}' fails on the inputs of data 'npz' (shape (10,))" in err
    assert run_dirs(tmp_path) == []


@pytest.mark.parametrize("space", [["--space", "node_subnet"], ["--space", "sparse_ift", "--set", "space.backbone=mlp"]])
def test_npz_flat_features_search_end_to_end(space, tmp_path):
    path = write_npz(tmp_path / "d.npz", (10,), x_test=arrays((10,), n=12)[0], y_test=arrays((10,), n=12)[1])
    assert search(tmp_path, [*space, *TINY], "data.name=npz", f"data.path={path}", "data.normalize=dataset") == 0
    data = load_data(validate_section("data", {"name": "npz", "path": str(path)}, CORE["data"]))
    assert data.input_shape == (10,) and data.num_classes == 3 and len(data.test[1]) == 12


def test_imagefolder_search_end_to_end(tmp_path):
    root = write_tree(tmp_path / "tree", sizes=((10, 10), (12, 9)))
    assert search(tmp_path, IMAGES, "data.name=imagefolder", f"data.path={root}", "data.image_size=8",
                  "data.normalize=dataset", "data.augment=flip") == 0
    assert len(run_dirs(tmp_path)) == 1


def test_imagefolder_reads_classes_channels_and_splits(tmp_path):
    root = write_tree(tmp_path / "grey", mode="L", splits=(("train", 3), ("val", 2)))
    data = load_data(validate_section("data", {"name": "imagefolder", "path": str(root)}, CORE["data"]))
    assert data.input_shape == (1, 8, 8) and data.num_classes == 2
    assert data.train[1].tolist() == [0, 1, 0, 1, 0, 1] and torch.equal(data.test[0], data.val[0])  # no test/
    assert data.train[0].min() >= 0 and data.train[0].max() <= 1
    colour = load_data(validate_section("data", {"name": "imagefolder", "path": str(write_tree(tmp_path / "rgb"))},
                                        CORE["data"]))
    assert colour.input_shape == (3, 8, 8) and torch.allclose(colour.train[0][0, :, 0, 0], torch.tensor([1., 0, 0]))


def test_imagefolder_limit_keeps_every_class_and_reads_only_the_kept_images(tmp_path):
    root = write_tree(tmp_path / "tree", splits=(("train", 4), ("val", 2)))
    (root / "train" / "class1" / "3.png").write_bytes(b"not an image")  # the last of class1: beyond the limit
    data = load_data(validate_section("data", {"name": "imagefolder", "path": str(root), "limit": 4}, CORE["data"]))
    assert data.train[1].tolist() == [0, 1, 0, 1] and len(data.val[1]) == 4


def test_npz_uint8_images_are_scaled_and_classes_name_the_count(tmp_path):
    x = np.full((6, 4, 4), 255, dtype=np.uint8)
    path = write_npz(tmp_path / "u.npz", x_train=x, y_train=np.arange(6) % 2, x_val=x[:2], y_val=np.array([0, 1]),
                     classes=np.array(["cat", "dog", "bird"]))
    data = load_data(validate_section("data", {"name": "npz", "path": str(path)}, CORE["data"]))
    assert data.input_shape == (1, 4, 4) and float(data.train[0].max()) == 1.0 and data.num_classes == 3


# -- augmentation ----------------------------------------------------------------------------------------------
def test_augmentation_is_seeded_and_keeps_shape():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8).repeat(8, 1, 1, 1)
    splits = Splits((x, torch.zeros(16)), (x, torch.zeros(16)), (x, torch.zeros(16)), 2, ("flip", "crop"))
    a = splits.augment(x, torch.Generator().manual_seed(3))
    b = splits.augment(x, torch.Generator().manual_seed(3))
    c = splits.augment(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    plain = Splits((x, x), (x, x), (x, x), 2)
    assert plain.augment(x, torch.Generator()) is x


def test_flip_alone_mirrors_whole_images():
    x = torch.randn(32, 1, 4, 4)
    out = Splits((x, x), (x, x), (x, x), 2, ("flip",)).augment(x, torch.Generator().manual_seed(0))
    same = [torch.equal(o, i) for o, i in zip(out, x)]
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    assert all(s or f for s, f in zip(same, flipped)) and any(same) and any(flipped)


def test_augmented_training_is_reproducible_and_evaluation_sees_the_data_as_is(tmp_path):
    from sparsenas.training import train_and_evaluate

    cfg = validate_section("train", {"epochs": 1}, CORE["train"])
    path = write_npz(tmp_path / "d.npz")
    data = load_data(validate_section("data", {"name": "npz", "path": str(path), "augment": ["flip", "crop"]},
                                      CORE["data"]))

    def run(seed):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        train_and_evaluate(model, data, cfg, seed, "cpu")
        return model[1].weight.detach().clone()

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))
    assert data.augmentation == ("flip", "crop")  # the val/test tensors are never passed through augment


# -- bad input: one line, exit 2, nothing written -------------------------------------------------------------
def _nan(p):
    x = arrays((1, 8, 8))[0]
    x[3, 0, 2, 2] = np.nan
    return write_npz(p, x_train=x)


def _pickled(p):
    xv, yv = arrays((1, 8, 8), n=24)
    np.savez(p, x_train=np.array([object()] * 4, dtype=object), y_train=np.zeros(4), x_val=xv, y_val=yv)
    return p


def _text(p):
    p.write_text("not an archive\n")
    return p


def _npy(p):
    with open(p, "wb") as f:
        np.save(f, np.zeros(3))
    return p


NPZ_BAD = [
    (lambda p: write_npz(p, x_val=None), "has no x_val"),
    (lambda p: write_npz(p, x_test=arrays((1, 8, 8), n=5)[0]), "has no y_test"),
    (lambda p: write_npz(p, y_train=np.arange(47) % 3), "y_train has 47 labels for 48 examples"),
    (lambda p: write_npz(p, x_val=arrays((1, 6, 6), n=24)[0]), "x_val has examples of shape (1, 6, 6)"),
    (lambda p: write_npz(p, x_train=arrays((2, 1, 8, 8))[0]), "x_train has shape (48, 2, 1, 8, 8)"),
    (_nan, "x_train holds NaN"),
    (lambda p: write_npz(p, y_val=np.arange(24) % 5), "y_val holds label 4, outside the 3 classes 0..2"),
    (lambda p: write_npz(p, y_train=np.arange(48) % 3 - 1), "y_train holds label -1"),
    (lambda p: write_npz(p, y_train=np.arange(48) % 3 + 0.5), "y_train must hold integer class indices"),
    (lambda p: write_npz(p, classes=np.array(["a", "b"])), "outside the 2 classes 0..1 of `classes`"),
    (lambda p: write_npz(p, x_train=np.zeros((0, 1, 8, 8)), y_train=np.zeros(0)), "x_train is empty"),
    (lambda p: write_npz(p, x_train=arrays((8, 8, 3))[0]), "x_train has shape (48, 8, 8, 3), channels last"),
    (_pickled, "is not an .npz of numeric arrays"),
    (_text, "is not an .npz of numeric arrays"),
    (_npy, "is a single array, not an .npz archive"),
]


def _differing_sizes(root):
    write_tree(root, sizes=((8, 8), (9, 8)))


def _corrupt(root):
    write_tree(root)
    (root / "val" / "class1" / "0.png").write_bytes(b"not a png")


def _unknown_val_class(root):
    write_tree(root)
    (root / "val" / "class7").mkdir()


def _empty_class(root):
    write_tree(root)
    (root / "train" / "class2").mkdir()


TREE_BAD = [
    (lambda root: root.mkdir(), "has no train/ folder"),
    (lambda root: [(root / s).mkdir(parents=True) for s in ("train", "val")], "train/ holds no images"),
    (lambda root: write_tree(root, splits=(("train", 2),)), "has no val/ folder"),
    (lambda root: write_tree(root, splits=(("train", 2), ("val", 0))), "val/ holds no images"),
    (_empty_class, "train/class2 holds no images"),
    (_unknown_val_class, "val/class7 is a class that train/ does not have"),
    (_differing_sizes, "images differ in size"),
    (_corrupt, "cannot read"),
]


def refused(tmp_path, capsys, args, message, *data):
    capsys.readouterr()
    assert search(tmp_path, args, *data) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert run_dirs(tmp_path) == []


@pytest.mark.parametrize("make,message", NPZ_BAD)
def test_bad_npz_is_refused_with_one_line(make, message, tmp_path, capsys):
    path = make(tmp_path / "bad.npz")
    refused(tmp_path, capsys, IMAGES, message, "data.name=npz", f"data.path={path}")


@pytest.mark.parametrize("make,message", TREE_BAD)
def test_bad_imagefolder_is_refused_with_one_line(make, message, tmp_path, capsys):
    make(tmp_path / "tree")
    refused(tmp_path, capsys, IMAGES, message, "data.name=imagefolder", f"data.path={tmp_path / 'tree'}")


@pytest.mark.parametrize("option,message", [
    ("data.augment=flip", "data.augment=['flip'] needs images"),
    ("data.downsample=2", "data.downsample=2 needs images"),
    ("data.image_size=4", "data.image_size=4 needs images"),
])
def test_image_options_on_flat_features_are_refused(option, message, tmp_path, capsys):
    path = write_npz(tmp_path / "flat.npz", (10,))
    refused(tmp_path, capsys, ["--space", "node_subnet", *TINY], message, "data.name=npz", f"data.path={path}", option)


@pytest.mark.parametrize("option,message", [
    ("data.augment=[rotate]", "data.augment has unknown 'rotate'"),
    ("data.normalize=zscore", "data.normalize must be one of none, dataset"),
    ("data.image_size=0", "data.image_size must be >= 1"),
    ("data.path=missing.npz", "does not exist"),
])
def test_bad_data_options_are_refused(option, message, tmp_path, capsys):
    refused(tmp_path, capsys, IMAGES, message, "data.name=npz", option)


def test_image_size_resizes_any_image_dataset():
    data = load_data(validate_section("data", {"image_size": 4}, CORE["data"]))
    assert data.input_shape == (1, 4, 4)


# -- a dataset from a plug-in -----------------------------------------------------------------------------------
PLUGIN = '''
import numpy as np

from sparsenas.data import DATASETS, tensors


@DATASETS.register("user_data_rings")
def rings(path, val_fraction, test_fraction):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 2))
    y = (np.linalg.norm(x, axis=1) > 1).astype(int)
    parts = [(x[:60], y[:60]), (x[60:75], y[60:75]), (x[75:], y[75:])]
    return tuple(tensors(a, b, (2,)) for a, b in parts), 2
'''


def test_a_dataset_registered_by_a_plugin_is_used(tmp_path, monkeypatch, capsys):
    (tmp_path / "user_data_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["search", "--space", "node_subnet", *TINY, "--set", "data.name=user_data_rings",
            "--runs-dir", tmp_path / "runs"]
    assert cli(*args) == 2 and "unknown dataset 'user_data_rings'" in capsys.readouterr().err
    assert cli("--allow-import", "user_data_plugin", *args) == 0
    assert len(run_dirs(tmp_path)) == 1


def test_the_readme_dataset_plugin_runs_a_search(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (tmp_path / "mydata.py").write_text(next(b for b in blocks if '@DATASETS.register("iris")' in b))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli("--allow-import", "mydata", "search", "--space", "node_subnet", *TINY, "--set", "data.name=iris",
               "--runs-dir", tmp_path / "runs") == 0
    assert len(run_dirs(tmp_path)) == 1
