"""Image classifiers used in this project, each behind a fixed input normalisation.

Every model returned by :func:`build_model` takes float images [B, C, H, W] with pixels in
[0, 1], maps them to [-1, 1] with a fixed :class:`Normalize` layer (mean 0.5, std 0.5 per
channel, stored as buffers, as the authors of the paper do), and returns logits
[B, num_classes]. Because the normalisation lives inside the model, attack radii (eps) are
always in [0, 1] pixel units. All architectures end in global average pooling, so any
``in_channels`` and any image size >= 8 works.

Architectures (names in :data:`MODEL_NAMES`):

- ``"resnet50_paper"``: the paper's "ResNet-50" as found in the authors' code
  (``Torture/Models/resnet_3layer.py``, imported by their train_resnet_mixup.py): a 3-stage
  ResNet with a 5x5 stem, 5 bottleneck blocks of expansion 1 per stage, widths 64/128/256.
  About 4.75M parameters.
- ``"preact_resnet18"``: the standard pre-activation ResNet-18 for 32x32 inputs. ~11.2M.
- ``"compact_resnet"``: the CPU default, a 3-stage pre-activation ResNet with widths
  32/64/128 and one block per stage. ~0.3M.
- ``"tiny_cnn"``: a 3-layer conv net for tests and smoke runs. ~20k.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["INITS", "MODEL_NAMES", "Normalize", "NormalizedClassifier", "PaperResNet", "PreActResNet",
           "TinyCNN", "build_model", "init_weights"]

MODEL_NAMES: tuple[str, ...] = ("resnet50_paper", "preact_resnet18", "compact_resnet", "tiny_cnn")
#: Weight initialisations: "pytorch" (each layer's default) and "kaiming_fan_out" (the authors'
#: resnet_3layer.py: convolutions Kaiming-normal, fan_out, relu gain; BatchNorm weight 1, bias 0).
INITS: tuple[str, ...] = ("pytorch", "kaiming_fan_out")


class Normalize(nn.Module):
    """Fixed per-channel affine map (x - mean) / std; mean and std are buffers, not parameters.

    With the project's mean = std = 0.5 this maps pixels in [0, 1] to [-1, 1].
    """

    def __init__(self, channels: int, mean: float = 0.5, std: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, channels, 1, 1), float(mean)))
        self.register_buffer("std", torch.full((1, channels, 1, 1), float(std)))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class NormalizedClassifier(nn.Module):
    """``net(normalize(x))``: the form of every model built by :func:`build_model`.

    ``normalize`` is the fixed [0, 1] -> [-1, 1] map; ``net`` is the architecture proper and
    expects already-normalised inputs.
    """

    def __init__(self, normalize: Normalize, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x))


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _stages(make_block, in_width: int, widths: Sequence[int], blocks_per_stage: Sequence[int],
            strides: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Stack stages of residual blocks; the first block of a stage carries its stride.

    ``make_block(in_channels, out_channels, stride)`` builds one block. Returns the stages and
    the number of output channels.
    """
    stages = []
    for width, n_blocks, stride in zip(widths, blocks_per_stage, strides, strict=True):
        blocks = []
        for i in range(n_blocks):
            blocks.append(make_block(in_width, width, stride if i == 0 else 1))
            in_width = width
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages), in_width


def _head(features: int, num_classes: int) -> nn.Sequential:
    """Global average pooling -> flatten -> linear classifier."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, num_classes))


# ----------------------------------------------------------------------------------------------
# Paper model


class Bottleneck(nn.Module):
    """Post-activation bottleneck block with expansion 1 (He et al. 2016, "Deep Residual Learning",
    https://arxiv.org/abs/1512.03385, Fig. 5 right; torchvision layout with the stride on the 3x3).

    relu(bn(conv1x1) -> relu -> bn(conv3x3, stride) -> relu -> bn(conv1x1) + shortcut), where the
    shortcut is the identity or, when the shape changes, a strided 1x1 conv + BN projection.
    """

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != width:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, width, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(width))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class PaperResNet(nn.Module):
    """The paper's "ResNet-50" (Pang, Xu, Zhu, ICLR 2020, Sec. 4.1), as defined in the authors'
    code (github.com/P2333/Mixup-Inference, ``Torture/Models/resnet_3layer.py``): 5x5 stem conv with
    64 channels, stride 1, no max-pool; three stages of 5 :class:`Bottleneck` blocks (expansion
    1) with widths 64/128/256 and strides 1/2/2; global average pool; linear head.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256),
                 blocks_per_stage: Sequence[int] = (5, 5, 5), stem_width: int = 64) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(in_channels, stem_width, kernel_size=5)
        strides = [1] + [2] * (len(widths) - 1)
        self.stages, features = _stages(Bottleneck, stem_width, widths, blocks_per_stage, strides)
        self.head = _head(features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)))


# ----------------------------------------------------------------------------------------------
# Pre-activation ResNets


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, "Identity Mappings in Deep Residual Networks",
    https://arxiv.org/abs/1603.05027, Fig. 4e): conv3x3(relu(bn(conv3x3(relu(bn(x)))))) + shortcut.

    When the shape changes, the shortcut is a strided 1x1 conv applied to the pre-activated input.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class PreActResNet(nn.Module):
    """Pre-activation ResNet for small images (He et al. 2016, https://arxiv.org/abs/1603.05027):
    3x3 stem conv (stride 1, no max-pool), stages of :class:`PreActBlock` with the given widths
    and block counts (stride 1 for the first stage, 2 after), a final BN-ReLU (as in the paper;
    the popular kuangliu/pytorch-cifar variant omits it), global average pool and a linear head.

    ``widths=(64, 128, 256, 512), blocks_per_stage=(2, 2, 2, 2)`` is the standard CIFAR
    PreAct ResNet-18; ``(32, 64, 128), (1, 1, 1)`` is this project's compact CPU model.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512),
                 blocks_per_stage: Sequence[int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        strides = [1] + [2] * (len(widths) - 1)
        self.stages, features = _stages(PreActBlock, widths[0], widths, blocks_per_stage, strides)
        self.final = nn.Sequential(nn.BatchNorm2d(features), nn.ReLU(inplace=True))
        self.head = _head(features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.final(self.stages(self.stem(x))))


# ----------------------------------------------------------------------------------------------
# Tiny model


class TinyCNN(nn.Module):
    """A small all-convolutional net in the VGG style (Simonyan & Zisserman 2015,
    https://arxiv.org/abs/1409.1556) for tests and smoke runs: three conv-BN-ReLU layers
    (widths 16/32/48, the last two with stride 2), global average pool, linear head (~20k
    parameters for 3 input channels and 10 classes).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, widths: Sequence[int] = (16, 32, 48)) -> None:
        super().__init__()
        layers = []
        for i, width in enumerate(widths):
            layers.append(_conv_bn_relu(in_channels, width, kernel_size=3, stride=1 if i == 0 else 2))
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.head = _head(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# ----------------------------------------------------------------------------------------------


def _architecture(name: str, num_classes: int, in_channels: int) -> nn.Module:
    if name == "resnet50_paper":
        return PaperResNet(num_classes, in_channels)
    if name == "preact_resnet18":
        return PreActResNet(num_classes, in_channels, widths=(64, 128, 256, 512), blocks_per_stage=(2, 2, 2, 2))
    if name == "compact_resnet":
        return PreActResNet(num_classes, in_channels, widths=(32, 64, 128), blocks_per_stage=(1, 1, 1))
    if name == "tiny_cnn":
        return TinyCNN(num_classes, in_channels)
    raise ValueError(f"unknown model name {name!r}; use one of {', '.join(MODEL_NAMES)}")


def init_weights(model: nn.Module, init: str) -> nn.Module:
    """Initialise ``model`` in place with scheme ``init`` (one of :data:`INITS`) and return it.

    ``"pytorch"`` leaves every layer's default initialisation; ``"kaiming_fan_out"`` is the authors'
    (resnet_3layer.py): every Conv2d weight ~ N(0, 2 / (out_channels * k_h * k_w)) (Kaiming normal,
    mode fan_out, relu gain), every BatchNorm/GroupNorm weight 1 and bias 0; conv biases and linear
    layers keep PyTorch's default, as theirs. Draws from the global torch RNG, like the defaults.
    """
    if init not in INITS:
        raise ValueError(f"init={init!r} is unknown; use one of {', '.join(INITS)}")
    if init == "kaiming_fan_out":
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return model


def build_model(name: str, num_classes: int, in_channels: int = 3, *, init: str = "pytorch") -> nn.Module:
    """Build the classifier ``name`` (one of :data:`MODEL_NAMES`) for ``num_classes`` classes.

    The returned module maps float images [B, in_channels, H, W] with pixels in [0, 1] (any
    H, W >= 8) to logits [B, num_classes]; it starts with a fixed :class:`Normalize` layer
    (pixels -> [-1, 1]) and is a :class:`NormalizedClassifier` whose ``net`` attribute is the
    architecture proper. Parameters are initialised by :func:`init_weights` with scheme ``init``
    ("pytorch": each layer's default; "kaiming_fan_out": the authors'); seed the global RNG,
    e.g. ``utils.seed_everything``, for a reproducible initialisation.

    Usage: ``model = build_model("compact_resnet", num_classes=10)``
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; use one of {', '.join(MODEL_NAMES)}")
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2 (got {num_classes}); pass the dataset's class count")
    if int(in_channels) != in_channels or in_channels < 1:
        raise ValueError(f"in_channels must be an integer >= 1 (got {in_channels}); pass 3 for RGB, 1 for grayscale")
    if init not in INITS:
        raise ValueError(f"init={init!r} is unknown; use one of {', '.join(INITS)}")
    model = NormalizedClassifier(Normalize(int(in_channels)), _architecture(name, int(num_classes), int(in_channels)))
    return init_weights(model, init)
