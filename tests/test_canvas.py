"""UnlearnCanvas' released layout, read from a tiny tree written here: three styles (tints a test can check
per pixel) x two objects (shapes), five images per cell."""
import numpy as np
import pytest
import torch
from PIL import Image

from raysweep.config import Data, RaysweepError
from raysweep.datasets import load_dataset
from raysweep.resolve import resolve

STYLES = {"Seed_Images": (1, 1, 1), "Van_Gogh": (1, 0, 0), "Ukiyoe": (0, 0, 1)}  # RGB tint of the strokes
OBJECTS = ("Cats", "Dogs")


def _draw(obj: str, tint, i: int) -> Image.Image:
    a = np.zeros((16, 16, 3), np.uint8)
    s = slice(3 + i % 3, 11 + i % 3)  # shifted per image
    if obj == "Cats":
        a[s, s] = 255  # a filled square
    else:
        a[s, 7:9] = a[7:9, s] = 255  # a cross
    return Image.fromarray(a * np.array(tint, np.uint8))


def make_tree(root, styles=STYLES, objects=OBJECTS, n=5):
    for style, tint in styles.items():
        for obj in objects:
            (root / style / obj).mkdir(parents=True)
            for i in range(1, n + 1):
                _draw(obj, tint, i).save(root / style / obj / f"{i}.jpg", quality=95)
    return root


def canvas(root, **kw) -> Data:
    return Data(**{"dataset": "unlearncanvas", "root": str(root), "resolution": 8, **kw})  # kw may replace root


def test_reads_the_release_layout_with_labels_matching_images(tmp_path):
    ds = load_dataset(canvas(make_tree(tmp_path)))
    c = ds.conditions
    assert c.objects == OBJECTS and c.styles == ("Seed_Images", "Ukiyoe", "Van_Gogh")  # sorted directory names
    assert ds.train_x.shape == (24, 3, 8, 8) and ds.test_x.shape == (6, 3, 8, 8)  # 1 of 5 held out per cell
    assert ds.train_x.min() >= -1 and ds.train_x.max() <= 1
    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        assert torch.bincount(y, minlength=c.n).min() >= 1  # every (object, style) pair in both splits
        r, b = x[:, 0].mean((1, 2)), x[:, 2].mean((1, 2))
        style = [c.styles[int(s)] for s in c.style_of(y)]
        for ri, bi, s in zip(r, b, style):  # the tint the label claims is the one in the pixels
            assert {"Van_Gogh": ri > bi + 0.1, "Ukiyoe": bi > ri + 0.1, "Seed_Images": abs(ri - bi) < 0.1}[s]
    # a cross covers fewer pixels than a square: objects are where the labels say
    ink = (ds.train_x.amax(1) + 1).mean((1, 2))
    square = c.object_of(ds.train_y) == 0
    assert ink[square].min() > ink[~square].max()


def test_split_per_cell_whatever_styles_are_chosen(tmp_path):
    root = make_tree(tmp_path)
    full = load_dataset(canvas(root))
    one = load_dataset(canvas(root, styles="Van_Gogh"))
    assert one.conditions.styles == ("Van_Gogh",) and one.conditions.n == 2
    van = full.conditions.style_of(full.test_y) == 2
    assert torch.equal(one.test_x, full.test_x[van])  # the same images held out
    other = load_dataset(canvas(root, split_seed=1))
    assert not torch.equal(other.test_x, full.test_x)


def _unreadable(root):
    (root / "Ukiyoe" / "Dogs" / "6.jpg").write_bytes(b"not an image")


def _uneven(root):
    (root / "Ukiyoe" / "Birds").mkdir()


def _empty(root):
    for p in (root / "Ukiyoe" / "Dogs").iterdir():
        p.unlink()


@pytest.mark.parametrize("damage, kw, says", [
    (None, {"root": "/nonexistent/canvas"}, "/nonexistent/canvas is not a directory"),
    (None, {"root": ""}, "needs data.root"),
    (None, {"styles": "Picasso"}, "unknown style 'Picasso'"),
    (None, {"download": True}, "cannot be downloaded"),
    (_uneven, {}, "every style needs the same objects"),
    (_empty, {}, "no images"),
    (_unreadable, {}, "cannot read"),
])
def test_bad_trees_are_one_line_errors(tmp_path, damage, kw, says):
    root = make_tree(tmp_path)
    if damage:
        damage(root)
    with pytest.raises(RaysweepError) as e:
        load_dataset(canvas(kw.pop("root", root), **kw))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_targets_are_one_line(tmp_path):
    from conftest import assert_one_line_error, run_clis

    root = make_tree(tmp_path / "canvas")
    cli = ("raysweep.trial", "--dataset", "unlearncanvas", "--root", str(root), "--out", str(tmp_path / "out"))
    res = run_clis({"unknown": (*cli, "--target", "style=Picasso"), "default": cli})
    assert_one_line_error(res["unknown"], "Picasso", "Van_Gogh")  # names the choices
    assert_one_line_error(res["default"], "forget_class=3", "2 objects")  # object 3 of a 2-object tree


def test_tiny_sd_on_canvas_unlearns_a_style_and_caches_latents(tmp_path):
    """The UnlearnCanvas setting end to end on the stand-in: SD latents of the paintings, a style target, the
    ResNet factor judges on pixels; the latents are encoded once per store."""
    from conftest import tiny_config
    from raysweep import store
    from raysweep.bases import load_bases
    from raysweep.trial import run_trial

    root = make_tree(tmp_path / "canvas")
    cfg = tiny_config(**{"data.dataset": "unlearncanvas", "data.root": str(root), "data.resolution": 8,
                         "data.target": "style=Van_Gogh", "model.preset": "sd-tiny", "pretrain.steps": 4,
                         "unlearn.steps": 4, "attack.steps": (0, 2), "unlearn.batch_size": 8, "attack.batch_size": 8,
                         "eval.n_forget": 4, "eval.n_per_class": 2, "eval.steps": 2, "attack.control": False,
                         "judge.epochs": 1, "unlearn.method": "dimum"})
    res = run_trial(cfg, str(tmp_path / "store"))
    assert res["status"] == "ok" and res["target"] == "style=Van_Gogh" and set(res["ar_dimra"]) == {"0", "2"}
    assert all(res[k] == res[k] for k in ("ua", "ira", "cra", "fid_judge"))  # evaluated (not NaN)
    latents = list((tmp_path / "store" / "base").glob("latents-*.parquet"))
    assert len(latents) == 1
    z, meta = store.load_state(str(latents[0]))
    assert meta["kind"] == "latents" and z["train"].shape == (24, 4, 4, 4) and z["test"].shape == (6, 4, 4, 4)
    again = load_bases(cfg, str(tmp_path / "store"))  # reads them back: same tensors the trial trained on
    assert torch.equal(again.ds.train_x, z["train"]) and again.cached


def test_canvas_sweep_experiment_builds_valid_trials(tmp_path, monkeypatch):
    """experiments/canvas_style_sweep.py over a tree holding its five styles: every choice of its space is a valid
    trial; without its two variables, a one-line error naming what is missing."""
    from conftest import ROOT
    from raysweep.experiment import load

    tints = dict(zip(["Seed_Images", "Van_Gogh", "Ukiyoe", "Picasso", "Watercolor"],
                     [(1, 1, 1), (1, 0, 0), (0, 0, 1), (0, 1, 0), (1, 1, 0)]))
    path = str(ROOT / "experiments" / "canvas_style_sweep.py")
    monkeypatch.delenv("UNLEARNCANVAS_ROOT", raising=False)
    monkeypatch.setenv("UNLEARNCANVAS_SD", "/models/sd")
    with pytest.raises(RaysweepError) as e:
        load(path)
    assert str(e.value) == "canvas_style_sweep needs UNLEARNCANVAS_ROOT (the UnlearnCanvas release)"
    root = make_tree(tmp_path / "canvas", styles=tints, n=2)
    (tmp_path / "sd").mkdir()  # validation asks only that the weights' directory exists
    monkeypatch.setenv("UNLEARNCANVAS_ROOT", str(root))
    monkeypatch.setenv("UNLEARNCANVAS_SD", str(tmp_path / "sd"))
    exp = load(path).validate()
    for method in ("dimum", "salun"):
        for alt in exp.space["dimum.alternative"].categories:
            cfg = exp.trial_config({"unlearn.method": method, "unlearn.steps": 50, "dimum.alternative": alt})
            assert resolve(cfg).target.spec == "style=Van_Gogh" and cfg.model.sd_path == str(tmp_path / "sd")
