import pytest
import torch

from raysweep.config import ConfigError, Data
from raysweep.data import alternative_stream, aux_stream, forget_stream, parse_alternative, retain_stream
from raysweep.datasets import conditions, load_dataset
from raysweep.target import Target


def test_digits_split_and_range(digits):
    assert digits.train_x.shape[1:] == (1, 8, 8) and len(digits.train_x) + len(digits.test_x) == 1797
    assert digits.train_x.min() >= -1 and digits.train_x.max() <= 1
    again = load_dataset(Data())
    assert torch.equal(again.test_y, digits.test_y)  # fixed seeded split
    assert load_dataset(Data(resolution=16)).train_x.shape[1:] == (1, 16, 16)


def test_streams_see_what_they_should(digits):
    c = Target(digits.conditions, object=3)
    x, y = next(forget_stream(digits, c, 32, 0))
    assert (y == 3).all()
    for it in (retain_stream(digits, c, 64, 0), aux_stream(digits, c, "test", 64, 0),
               aux_stream(digits, c, "retain", 64, 0)):
        for _ in range(20):
            assert (next(it)[1] != 3).all()


def test_aux_test_stream_draws_from_the_test_split(digits):
    x, _ = next(aux_stream(digits, Target(digits.conditions, object=3), "test", 16, 0))
    test = digits.test_x.flatten(1)
    assert all((test == row).all(1).any() for row in x.flatten(1))


def test_the_attackers_aux_set_is_one_neighbouring_class_or_a_seeded_subset(digits):
    c = Target(digits.conditions, object=3)
    x, y = next(aux_stream(digits, c, "class:8", 16, 0))
    test8 = digits.test_x[digits.test_y == 8].flatten(1)
    assert (y == 8).all() and all((test8 == row).all(1).any() for row in x.flatten(1))

    def seen(it, n=40):  # every distinct image the stream shows over n batches
        return {tuple(row.tolist()) for _ in range(n) for row in next(it)[0].flatten(1)}

    few = seen(aux_stream(digits, c, "test", 8, 0, size=20))
    assert len(few) == 20 and few == seen(aux_stream(digits, c, "test", 8, 0, size=20))  # seeded
    assert few != seen(aux_stream(digits, c, "test", 8, 1, size=20))
    assert len(seen(aux_stream(digits, c, "test", 8, 0))) > 300  # size 0: the whole test split minus class 3
    with pytest.raises(ConfigError, match="attack.aux_size=5000 is more than the"):
        aux_stream(digits, c, "test", 8, 0, size=5000)
    for spec, needle in (("class:3", "attack.aux 'class:3': k must differ"), ("class:x", "attack.aux 'class:x'"),
                         ("internet", "unknown attack.aux 'internet'")):
        with pytest.raises(ConfigError, match=needle):
            aux_stream(digits, c, spec, 8, 0)


def test_alternative_data_is_relabelled_but_not_forget_images(digits):
    c = Target(digits.conditions, object=3)
    forget = digits.of_class(3).flatten(1)
    for spec in ("retain", "class:5", "noise"):
        x, y = next(alternative_stream(digits, c, spec, 32, 0))
        assert (y == 3).all()
        assert not any((forget == row).all(1).any() for row in x.flatten(1)), spec
    x, _ = next(alternative_stream(digits, c, "class:5", 32, 0))
    five = digits.of_class(5).flatten(1)
    assert all((five == row).all(1).any() for row in x.flatten(1))


@pytest.mark.parametrize("spec", ["class:3", "class:10", "class:x", "pictures"])
def test_bad_alternative_specs(spec):
    with pytest.raises(ConfigError):
        parse_alternative(spec, Target(conditions(Data()), object=3))
