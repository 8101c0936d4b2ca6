import torch

from raysweep.config import Eval
from raysweep.evaluate import Evaluator, fid
from raysweep.judge import accuracy
from raysweep.target import Target


class RealImages:
    """A stand-in generator that returns real test images of ``class_map[label]``."""

    def __init__(self, ds, class_map=None):
        self.ds, self.class_map = ds, class_map or {}

    def __call__(self, labels, noise):
        out = []
        for i, c in enumerate(labels.tolist()):
            pool = self.ds.of_class(self.class_map.get(c, c), "test")
            out.append(pool[i % len(pool)])
        return torch.stack(out)


def _evaluator(digits, judge):
    net, acc = judge
    return Evaluator(digits, net, acc, "test-judge", Eval(n_forget=60, n_per_class=30))


def test_judge_is_accurate_on_real_test_images(digits, judge):
    net, acc = judge
    assert acc >= 0.95 and abs(acc - accuracy(net, digits.test_x, digits.test_y)) < 1e-9


def test_ar_is_one_for_real_images_of_the_class(digits, judge):
    ev = _evaluator(digits, judge)
    assert ev.ar(RealImages(digits), Target(digits.conditions, object=3)) >= 0.95


def test_ar_is_near_zero_for_images_of_another_class(digits, judge):
    ev = _evaluator(digits, judge)
    assert ev.ar(RealImages(digits, {3: 5}), Target(digits.conditions, object=3)) <= 0.05


def test_evaluate_reports_retain_acc_and_settings(digits, judge):
    ev = _evaluator(digits, judge)
    res = ev.evaluate(RealImages(digits, {3: 5}), target=Target(digits.conditions, object=3))
    assert res["ar_forget"] <= 0.05 and res["retain_acc"] >= 0.95
    assert len(res["ar_per_class"]) == 10
    for key in ("sampler", "sampling_steps", "guidance_scale", "n_samples_per_class", "judge_id",
                "judge_test_acc", "fid_extractor"):
        assert key in res
    assert res["fid_extractor"] == "judge" and "fid_judge" in res


def test_fid_of_a_set_with_itself_is_zero_and_of_two_classes_is_not(digits, judge):
    net, _ = judge
    ones, sevens = digits.of_class(1), digits.of_class(7)
    same = fid(ones, ones, "judge", net)
    other = fid(ones, sevens, "judge", net)
    half = fid(ones[::2], ones[1::2], "judge", net)
    assert abs(same) < 1e-3
    assert other > 10 * max(half, 1e-3)  # two classes are far apart, two halves of one class are not


def test_fid_tolerance_is_two_std_of_the_base_plus_the_retrained_models_excess():
    from raysweep.metrics import fid_tolerance

    assert fid_tolerance([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == (2.0, 3.0)  # std 1; retrain 5 - base 2
    assert fid_tolerance([1.0, 2.0, 3.0], [0.0]) == (2.0, 0.0)  # a better retrained model widens nothing
    assert fid_tolerance([1.0, 2.0, 3.0]) == (2.0, 0.0) and fid_tolerance([2.0], [4.0]) == (0.0, 2.0)
