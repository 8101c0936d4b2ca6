"""The judge: a classifier trained on *real* images (never on the diffusion model's output).

Its penultimate features are also the default FID feature space (``fid_extractor = judge``), which works
offline; FIDs in that space are not comparable to Inception FIDs and are never reported under that name.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import Judge as JudgeConfig
from .data import Dataset, stream


class SmallCNN(nn.Module):
    """Digits judge: three convs, global pooling, one linear layer."""

    def __init__(self, channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = 4 * width
        self.head = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResNetJudge(nn.Module):
    """torchvision ResNet-18; for 32x32 inputs (CIFAR) with a 3x3 stem, else ImageNet's (stride 4)."""

    def __init__(self, channels: int, num_classes: int, small_input: bool = True):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=num_classes)
        if small_input:
            net.conv1 = nn.Conv2d(channels, 64, 3, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif channels != 3:
            net.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
        self.head = net.fc
        net.fc = nn.Identity()
        self.features = net
        self.num_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FactorJudge(nn.Module):
    """Two classifiers, one for the object and one for the style, read together as one over (object, style):
    ``log p(o, s) = log p(o) + log p(s)``. Cross-entropy on that trains each on its own factor, and its argmax
    is the pair of argmaxes, so AR, retain accuracy and FID code need not know there are two."""

    def __init__(self, channels: int, objects: int, styles: int, backbone=SmallCNN):
        super().__init__()
        self.object, self.style = backbone(channels, objects), backbone(channels, styles)
        self.num_features = self.object.num_features + self.style.num_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.object.features(x), self.style.features(x)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, ls = F.log_softmax(self.object(x), 1), F.log_softmax(self.style(x), 1)
        return (lo[:, :, None] + ls[:, None, :]).flatten(1)


def make_judge(kind: str, channels: int, objects: int, styles: int = 0) -> nn.Module:
    """``kind`` (the dataset's, ``raysweep.datasets``): small (8x8 digits: three convs), resnet-32 (32x32 CIFAR:
    ResNet-18 with a 3x3 stem), resnet (paintings at 256-512 px: ImageNet's stem). Two factors: one each."""
    backbone = {"small": SmallCNN, "resnet-32": ResNetJudge,
                "resnet": lambda c, k: ResNetJudge(c, k, small_input=False)}[kind]
    return FactorJudge(channels, objects, styles, backbone) if styles else backbone(channels, objects)


def factor_accuracy(judge: nn.Module, ds: Dataset) -> dict[str, float]:
    """Object and style accuracy on the real test split (two-factor datasets)."""
    pred, c = predict(judge, ds.test_x), ds.conditions
    return {"object_acc": float((c.object_of(pred) == c.object_of(ds.test_y)).float().mean()),
            "style_acc": float((c.style_of(pred) == c.style_of(ds.test_y)).float().mean())}


class JudgeFeatures(nn.Module):
    """The judge's penultimate layer as a torchmetrics FID feature extractor (needs ``num_features``)."""

    def __init__(self, judge: nn.Module):
        super().__init__()
        self.judge = judge
        self.num_features = judge.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.judge.features(x)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # one-pixel random shifts: generated digits are not perfectly centred, the judge should not care
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train_judge(ds: Dataset, cfg: JudgeConfig, kind: str, device: str = "cpu") -> tuple[nn.Module, float]:
    """Train on the real train split; returns (judge in eval mode, accuracy on the real test split)."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    judge = make_judge(kind, ds.channels, len(ds.conditions.objects), len(ds.conditions.styles)).to(device)
    opt = torch.optim.Adam(judge.parameters(), lr=cfg.lr)
    batches = stream(ds.train_x, ds.train_y, cfg.batch_size, cfg.seed)
    steps = cfg.epochs * max(1, len(ds.train_x) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    judge.train()
    for _ in range(steps):
        x, y = next(batches)
        loss = F.cross_entropy(judge(_augment(x, g).to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    judge.eval()
    return judge, accuracy(judge, ds.test_x, ds.test_y)


@torch.no_grad()
def predict(judge: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    device = next(judge.parameters()).device
    return torch.cat([judge(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def accuracy(judge: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(judge, x) == y).float().mean())
