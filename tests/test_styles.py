"""Feature (style) unlearning on digits-styles: conditions, targets, two-factor conditioning, judges, metrics."""
import copy

import pytest
import torch

from conftest import run_cli, tiny_config
from raysweep.config import Config, ConfigError, Data, Judge, Model, apply_overrides
from raysweep.data import STYLES, aux_stream, forget_stream
from raysweep.datasets import conditions, load_dataset
from raysweep.diffusion import FactorEmbedding, make_unet, null_class
from raysweep.evaluate import Evaluator
from raysweep.judge import factor_accuracy, train_judge
from raysweep.methods import REGISTRY
from raysweep.methods.base import Context
from raysweep.resolve import resolve
from raysweep.target import parse_target
from raysweep.trial import run_trial

S = ("plain", "inverted", "rotated", "faint")


@pytest.fixture(scope="module")
def styled():
    return load_dataset(Data(dataset="digits-styles"))


@pytest.fixture(scope="module")
def style_judge(styled):
    judge, _ = train_judge(styled, Judge(epochs=8), "small")
    return judge


def test_every_digit_in_every_style_on_the_digits_split(styled, digits):
    c = styled.conditions
    assert c.styles == S and c.n == 40
    assert len(styled.train_x) == 4 * len(digits.train_x) and len(styled.test_x) == 4 * len(digits.test_x)
    for s, name in enumerate(S):  # style s of image i is STYLES[name] of the plain digits image i, same split
        test = styled.test_x[c.style_of(styled.test_y) == s]
        assert torch.equal(test, STYLES[name](digits.test_x))
        assert torch.equal(c.object_of(styled.test_y[c.style_of(styled.test_y) == s]), digits.test_y)
    assert torch.equal(load_dataset(Data(dataset="digits-styles")).train_x, styled.train_x)  # deterministic


def test_targets_select_swap_and_relabel():
    conds = conditions(Data(dataset="digits-styles"))
    y = torch.arange(40)
    style = parse_target("style=inverted", conds)
    assert style.forget == [o * 4 + 1 for o in range(10)] and len(style.retain) == 30
    assert torch.equal(conds.style_of(style.swap(y)), (conds.style_of(y) + 1) % 4)  # next style, same digit
    assert torch.equal(conds.object_of(style.swap(y)), conds.object_of(y))
    assert (conds.style_of(style.relabel(y)) == 1).all() and torch.equal(conds.object_of(style.relabel(y)),
                                                                         conds.object_of(y))
    obj = parse_target("object=3", conds)
    assert obj.forget == [12, 13, 14, 15] and torch.equal(conds.style_of(obj.relabel(y)), conds.style_of(y))
    assert (conds.object_of(obj.relabel(y)) == 3).all() and (conds.object_of(obj.swap(y[12:16])) == 4).all()
    pair = parse_target("object=3,style=rotated", conds)
    assert pair.forget == [14] and (pair.relabel(y) == 14).all() and pair.attribute == "pair"
    single = parse_target("object=3", conditions(Data()))  # the class-unlearning case is the same code path
    assert single.forget == [3] and torch.equal(single.mask(torch.arange(10)), torch.arange(10) == 3)
    assert torch.equal(single.swap(torch.tensor([3, 3])), torch.tensor([4, 4]))


@pytest.mark.parametrize("spec, needle", [
    ("style=bold", "unknown style 'bold'"),
    ("object=eleven", "unknown object 'eleven'"),
    ("object=3,object=4", "matches no condition"),
    ("colour=red", "unknown key"),
])
def test_bad_targets(spec, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve(apply_overrides(Config(), {"data.dataset": "digits-styles", "data.target": spec}))


def test_target_matching_every_condition_is_refused():
    cfg = apply_overrides(Config(), {"data.dataset": "digits-styles", "data.styles": "plain",
                                     "data.target": "style=plain"})
    with pytest.raises(ConfigError, match="matches every condition"):
        resolve(cfg)
    with pytest.raises(ConfigError, match="no styles"):
        resolve(apply_overrides(Config(), {"data.target": "style=plain"}))


def test_bad_target_on_the_command_line_is_one_line(tmp_path):
    res = run_cli("raysweep.trial", "--dataset", "digits-styles", "--target", "style=bold", "--out", str(tmp_path))
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and "unknown style 'bold'" in lines[0], res.stderr


def test_factor_embedding_sums_two_embeddings_and_drops_each_factor():
    model = make_unet(Model(preset="tiny"), "digits", 1, 8, 10, styles=4)
    emb = model.class_embedding
    assert isinstance(emb, FactorEmbedding) and null_class(model) == 54 == emb.size - 1
    y = torch.arange(55)
    with torch.no_grad():
        expected = torch.stack([emb.object.weight[o] + emb.style.weight[s] for o, s in emb.table.tolist()])
        assert torch.allclose(emb(y), expected)
    assert emb.table[12].tolist() == [3, 0] and emb.table[43].tolist() == [3, 4] and emb.table[52].tolist() == [10, 2]
    labels = torch.arange(40)
    assert torch.equal(emb.drop(labels, 0.0), labels)
    assert (emb.drop(labels, 1.0) == 54).all()
    torch.manual_seed(0)
    dropped = emb.drop(labels.repeat(50), 0.5)
    table = emb.table[dropped]
    kept_o, kept_s = table[:, 0] < 10, table[:, 1] < 4
    assert (table[kept_o, 0] == (labels.repeat(50) // 4)[kept_o]).all()  # what is kept is the label's own factor
    assert (table[kept_s, 1] == (labels.repeat(50) % 4)[kept_s]).all()
    assert 0.4 < float(kept_o.float().mean()) < 0.6 and 0.4 < float(kept_s.float().mean()) < 0.6
    assert "class_embedding.table" not in model.state_dict()  # derived, not a weight


def test_judges_recognise_object_and_style_of_real_images(styled, style_judge):
    acc = factor_accuracy(style_judge, styled)
    assert acc["object_acc"] >= 0.95 and acc["style_acc"] >= 0.95, acc


class Render:
    """A generator returning real test images; ``style_map`` renders a condition's digit in another style."""

    def __init__(self, ds, style_map=None):
        self.ds, self.style_map = ds, style_map or {}

    def __call__(self, labels, noise):
        c, out = self.ds.conditions, []
        for i, y in enumerate(labels.tolist()):
            o, s = y // 4, y % 4
            pool = self.ds.of_class(c.index(o, self.style_map.get(s, s)), "test")
            out.append(pool[i % len(pool)])
        return torch.stack(out)


def test_ua_ira_cra_on_generators_whose_answer_is_known(styled, style_judge):
    from raysweep.config import Eval

    ev = Evaluator(styled, style_judge, 1.0, "test", Eval(n_forget=80, n_per_class=10))
    target = parse_target("style=inverted", styled.conditions)
    honest = ev.evaluate(Render(styled), target)  # draws the inverted style when asked: nothing forgotten
    assert honest["ua"] <= 0.05 and honest["ira"] >= 0.95 and honest["cra"] >= 0.95
    forgot = ev.evaluate(Render(styled, {1: 0}), target)  # draws inverted digits plainly: style forgotten
    assert forgot["ua"] >= 0.95 and forgot["ira"] >= 0.95 and forgot["cra"] >= 0.95
    assert abs(forgot["ar_forget"] - (1 - forgot["ua"])) < 1e-9
    broken = ev.evaluate(Render(styled, {0: 1, 1: 0}), target)  # plain retained digits come out inverted
    assert broken["ira"] <= 0.8 and broken["cra"] >= 0.95


@pytest.fixture(scope="module")
def style_ctx(styled):
    cfg = tiny_config(**{"data.dataset": "digits-styles", "data.target": "style=inverted",
                         "unlearn.batch_size": 32, "sa.replay_per_class": 2, "sa.fisher_per_class": 1,
                         "dimum.generated_per_class": 2, "unlearn.label_dropout": 0.0})
    torch.manual_seed(0)
    model = make_unet(cfg.model, "digits", 1, 8, 10, styles=4)
    return Context(cfg, styled, resolve(cfg).target, copy.deepcopy(model).eval().requires_grad_(False)), model


def test_dimum_memorizes_other_styles_under_the_target_style(style_ctx):
    ctx, model = style_ctx
    c, inverted = ctx.ds.conditions, ctx.ds.where(ctx.target, True)[0].flatten(1)
    for alt in ("retain", "style:plain", "class:5", "noise", "generated"):
        ctx.cfg.dimum.alternative = alt
        x, y = next(REGISTRY["dimum"](ctx).prepare(model)["alternative"])
        assert (c.style_of(y) == 1).all(), alt  # every label is the forgotten style...
        assert not any((inverted == row).all(1).any() for row in x.flatten(1)), alt  # ...no image is
        if alt == "class:5":
            assert (c.object_of(y) == 5).all()
    ctx.cfg.dimum.alternative = "retain"


def test_salun_targets_the_next_style_and_dimra_never_sees_the_style(style_ctx):
    ctx, model = style_ctx
    method = REGISTRY["salun"](ctx)
    seen = []
    handle = model.class_embedding.register_forward_hook(lambda m, i, o: seen.append(i[0].clone()))
    x, y = next(forget_stream(ctx.ds, ctx.target, 8, 0))
    method.unlearning_term(model, {"forget": (x, y)})  # label dropout 0 here: every label as given
    handle.remove()
    assert torch.equal(seen[0], ctx.target.swap(y)) and (ctx.ds.conditions.style_of(seen[0]) == 2).all()
    assert torch.equal(seen[1], y)
    for spec in ("test", "retain"):
        it = aux_stream(ctx.ds, ctx.target, spec, 64, 0)
        assert all((ctx.ds.conditions.style_of(next(it)[1]) != 1).all() for _ in range(10))
    noise = next(REGISTRY["sa"](ctx).prepare(copy.deepcopy(model))["noise"])[1]
    assert set(noise.tolist()) <= set(ctx.target.forget) and len(set(noise.tolist())) > 1


@pytest.mark.parametrize("method", ["dimum", "salun"])
def test_style_unlearning_trial_end_to_end(tmp_path_factory, method):
    root = str(tmp_path_factory.getbasetemp() / "styles-store")
    cfg = tiny_config(**{"data.dataset": "digits-styles", "data.target": "style=inverted", "unlearn.method": method,
                         "unlearn.steps": 8, "attack.steps": (0, 4), "unlearn.batch_size": 16,
                         "attack.batch_size": 16, "eval.n_per_class": 2, "eval.reference_seeds": 2,
                         "eval.n_forget": 20, "pretrain.steps": 12})
    res = run_trial(cfg, root)
    assert res["status"] == "ok" and res["target"] == "style=inverted" and res["unlearn_steps_run"] == 8
    for k in ("ua", "ira", "cra", "object_acc", "style_acc", "judge_object_acc", "judge_style_acc"):
        assert 0.0 <= res[k] <= 1.0, k
    assert abs(res["ua"] - (1 - res["ar_mu"])) < 1e-9 and set(res["ar_dimra"]) == {"0", "4"}
    assert len(res["ar_per_class"]) == 40
