import torch

from raysweep.config import Model, Schedule
from raysweep.diffusion import DenoisingLoss, guided_eps, make_unet, null_class, sample


def _unet():
    torch.manual_seed(0)
    return make_unet(Model(preset="tiny"), "digits", 1, 8, 10).eval()


def test_class_embedding_has_a_null_class():
    m = _unet()
    assert m.config.num_class_embeds == 11 and null_class(m) == 10


def test_batched_cfg_equals_two_forwards():
    m = _unet()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, 8, 8, generator=g)
    t = torch.randint(0, 1000, (6,), generator=g)
    y = torch.arange(6)
    with torch.no_grad():
        a = guided_eps(m, x, t, y, 1.5, batched=True)
        b = guided_eps(m, x, t, y, 1.5, batched=False)
        cond = m(x, t, class_labels=y).sample
        null = m(x, t, class_labels=torch.full_like(y, 10)).sample
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a, null + 1.5 * (cond - null), atol=1e-5)
    assert not torch.allclose(a, cond, atol=1e-3)  # guidance actually changes the prediction


def test_same_noise_same_images_and_labels_matter():
    m = _unet()
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3])
    a = sample(m, y, noise, schedule=Schedule(), steps=5)
    b = sample(m, y, noise, schedule=Schedule(), steps=5)
    c = sample(m, torch.tensor([4, 5, 6, 7]), noise, schedule=Schedule(), steps=5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == noise.shape and a.abs().max() <= 1


def test_label_dropout_uses_the_null_class():
    m = _unet()
    seen = []
    hook = m.class_embedding.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].clone()))
    loss = DenoisingLoss(Schedule(), label_dropout=0.5)
    torch.manual_seed(0)
    value = loss(m, torch.zeros(200, 1, 8, 8), torch.full((200,), 3))
    hook.remove()
    labels = seen[0]
    assert torch.isfinite(value) and set(labels.tolist()) == {3, 10}
    assert 60 < int((labels == 10).sum()) < 140


def test_our_unet_computes_what_diffusers_unet_computes_and_follows_its_weights_dtype():
    from diffusers import UNet2DModel

    ours = _unet()
    theirs = UNet2DModel.from_config(ours.config).eval()
    theirs.load_state_dict(ours.state_dict())
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([5, 500, 999]), torch.tensor([1, 2, 10])
    with torch.no_grad():
        assert torch.equal(ours(x, t, class_labels=y).sample, theirs(x, t, class_labels=y).sample)
    assert ours.dtype == theirs.dtype == torch.float32
    ours.to(torch.float64), theirs.to(torch.float64)
    assert ours.dtype == theirs.dtype == torch.float64
    with torch.no_grad():  # the embeddings are cast to the read dtype: a stale one would fail here
        assert ours(x.double(), t, class_labels=y).sample.dtype == torch.float64
