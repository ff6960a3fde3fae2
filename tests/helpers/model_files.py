"""Model files the tests build: the authors' checkpoint layout with random weights
(`authors_state_dict`), and an architecture this project does not have saved as TorchScript or
torch.export (`mine`, `save_torchscript`, `save_export`)."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch
from torch import nn

WIDTHS = (64, 128, 256)  # resnet_3layer.ResNet: layer1..3 of Bottleneck (expansion 1), [5, 5, 5] blocks
BLOCKS = 5


def _bn(sd: OrderedDict, name: str, channels: int, g: torch.Generator) -> None:
    sd[f"{name}.weight"] = 1 + 0.2 * torch.randn(channels, generator=g)
    sd[f"{name}.bias"] = 0.1 * torch.randn(channels, generator=g)
    sd[f"{name}.running_mean"] = 0.1 * torch.randn(channels, generator=g)
    sd[f"{name}.running_var"] = 0.5 + torch.rand(channels, generator=g)
    sd[f"{name}.num_batches_tracked"] = torch.tensor(1234)


def _conv(sd: OrderedDict, name: str, cout: int, cin: int, k: int, g: torch.Generator) -> None:
    sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5


def authors_state_dict(num_classes: int = 10, seed: int = 0) -> OrderedDict:
    """Random weights and BN statistics, keys and shapes (and order) as resnet_3layer.resnet50's state_dict."""
    g = torch.Generator().manual_seed(seed)
    sd: OrderedDict = OrderedDict()
    _conv(sd, "conv1", 64, 3, 5, g)
    _bn(sd, "bn1", 64, g)
    inplanes = 64
    for layer, planes in enumerate(WIDTHS, start=1):
        for block in range(BLOCKS):
            p = f"layer{layer}.{block}"
            cin = inplanes if block == 0 else planes
            _conv(sd, f"{p}.conv1", planes, cin, 1, g)
            _bn(sd, f"{p}.bn1", planes, g)
            _conv(sd, f"{p}.conv2", planes, planes, 3, g)
            _bn(sd, f"{p}.bn2", planes, g)
            _conv(sd, f"{p}.conv3", planes, planes, 1, g)
            _bn(sd, f"{p}.bn3", planes, g)
            if block == 0 and (layer > 1 or inplanes != planes):
                _conv(sd, f"{p}.downsample.0", planes, inplanes, 1, g)
                _bn(sd, f"{p}.downsample.1", planes, g)
        inplanes = planes
    sd["fc_dense.weight"] = 0.1 * torch.randn(num_classes, 256, generator=g)
    sd["fc_dense.bias"] = 0.1 * torch.randn(num_classes, generator=g)
    return sd


class Mine(nn.Module):
    """An architecture this project does not have (GELU, max-pool, tanh, BN), taking [0, 1] images."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.GELU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 12, 3), nn.Tanh())
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x - 0.5).mean(dim=(2, 3)))


def mine(num_classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    model = Mine(num_classes)
    model.body[1].running_mean.uniform_(-0.1, 0.1)  # BN statistics that matter in eval mode
    model.body[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


def save_torchscript(model: nn.Module, path, size: int = 32) -> None:
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, still loads
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(model, torch.rand(3, 3, size, size)), str(path))


def save_export(model: nn.Module, path, size: int = 32) -> None:
    """torch.export with a dynamic batch dimension (image size fixed at `size`)."""
    example = torch.rand(3, 3, size, size)
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(program, str(path))
