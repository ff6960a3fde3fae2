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
- ``"airbench94"``: the network of Jordan's airbench94 (2024, https://arxiv.org/abs/2404.00498;
  :class:`WhitenedConvNet`): a fixed 2x2 patch-whitening convolution, then three
  conv-pool-BatchNorm-GELU groups of widths 64/256/256. ~1.97M. Its whitening layer is fitted to
  training-image patches by the train job (``core.training.loop.fit_whitening``), not by its constructor.
- ``"airbench94_narrow"``: the same at widths 32/128/128. ~0.5M; about 1/3.5 of the training
  FLOPs of ``airbench94``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["INITS", "MODEL_NAMES", "Normalize", "NormalizedClassifier", "PaperResNet", "PatchWhitening",
           "PreActResNet", "TinyCNN", "WhitenedConvNet", "build_model", "init_weights", "whitening_layers"]

MODEL_NAMES: tuple[str, ...] = ("resnet50_paper", "preact_resnet18", "compact_resnet", "tiny_cnn", "airbench94",
                                "airbench94_narrow")
#: The group widths of the airbench-shaped registry models (:class:`WhitenedConvNet`).
AIRBENCH_WIDTHS: dict[str, tuple[int, int, int]] = {"airbench94": (64, 256, 256), "airbench94_narrow": (32, 128, 128)}
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
# The airbench94 network: patch whitening, then conv-pool-BN-GELU groups


class PatchWhitening(nn.Conv2d):
    """A k x k convolution (no padding, with bias) whose weights whiten k x k image patches.

    After :meth:`fit` on images x, the first ``C k^2`` output channels are the patches' coordinates
    in the eigenbasis of their covariance, each divided by sqrt(eigenvalue + eps), and the other
    ``C k^2`` their negatives (so a following GELU sees both signs of every direction; airbench94
    stacks them the same way). The weight is frozen (``requires_grad=False``: it is a function of
    the training data, not a learned parameter) and lives in the state dict, so a checkpoint carries
    it. Unlike airbench94, which takes the uncentred second moment of the patches, the covariance is
    centred and the bias set to -W mean, so on the data it was fitted on every output channel has
    mean 0 and variance eigenvalue / (eigenvalue + eps), i.e. ~1: the layer whitens.
    Before :meth:`fit` it is an ordinary random convolution.
    """

    def __init__(self, in_channels: int, kernel_size: int = 2) -> None:
        super().__init__(in_channels, 2 * in_channels * kernel_size**2, kernel_size, padding=0, bias=True)
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def fit(self, x: Tensor, eps: float = 5e-4) -> dict[str, float]:
        """Set weight and bias from the k x k patches of images ``x`` [N, C, H, W] (as this layer
        sees them, i.e. already normalised), in float64; returns the smallest and largest patch
        eigenvalue, for the train log. Deterministic: no random draw."""
        c, (kh, kw) = self.in_channels, self.kernel_size
        if x.dim() != 4 or x.shape[1] != c:
            raise ValueError(f"PatchWhitening.fit expects images [N, {c}, H, W], got {tuple(x.shape)}")
        # [N, C, H', W', kh, kw] -> one row per patch, flattened in the conv weight's (C, kh, kw) order.
        patches = x.double().unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw)
        mean = patches.mean(0)
        centred = patches - mean
        covariance = centred.T @ centred / (patches.shape[0] - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending; columns are eigenvectors
        scaled = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]  # [C k^2, C k^2]
        weight = torch.cat([scaled, -scaled])
        self.weight.copy_(weight.reshape(self.weight.shape).to(self.weight.dtype))
        self.bias.copy_((-(weight @ mean)).to(self.bias.dtype))
        return {"eigenvalue_min": float(eigenvalues.min()), "eigenvalue_max": float(eigenvalues.max())}


def whitening_layers(model: nn.Module) -> list[PatchWhitening]:
    """Every :class:`PatchWhitening` in ``model`` (empty for the other architectures)."""
    return [m for m in model.modules() if isinstance(m, PatchWhitening)]


class _DiracConv(nn.Conv2d):
    """3x3 'same' convolution without bias, initialised as airbench94's: PyTorch's default, then the
    first ``in_channels`` filters set to the identity (dirac), so each group starts close to passing
    its input through."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1, bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.dirac_(self.weight.data[: min(self.in_channels, self.out_channels)])


def _frozen_scale_batchnorm(channels: int) -> nn.BatchNorm2d:
    """airbench94's BatchNorm: eps 1e-12, running statistics with momentum 0.4 (0.6 in the
    'keep' convention of its paper), scale fixed at 1 (not trained), shift trained."""
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


def _pool2(x: Tensor) -> Tensor:
    """2x2 max pooling; a map already 1 pixel high or wide stays as it is, so images down to 8x8
    pass all three groups (at 32x32 it never triggers: the maps are 31 -> 15 -> 7 -> 3)."""
    return F.max_pool2d(x, 2) if min(x.shape[-2:]) >= 2 else x


class _ConvGroup(nn.Module):
    """conv3x3 -> maxpool 2 -> BatchNorm -> GELU -> conv3x3 -> BatchNorm -> GELU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _DiracConv(in_channels, out_channels)
        self.norm1 = _frozen_scale_batchnorm(out_channels)
        self.conv2 = _DiracConv(out_channels, out_channels)
        self.norm2 = _frozen_scale_batchnorm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.gelu(self.norm1(_pool2(self.conv1(x))))
        return F.gelu(self.norm2(self.conv2(x)))


class WhitenedConvNet(nn.Module):
    """The network of airbench94 (Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
    https://arxiv.org/abs/2404.00498; github.com/KellerJordan/cifar10-airbench, airbench94.py):
    :class:`PatchWhitening` (2x2, 2 C 4 channels) -> GELU -> three :class:`_ConvGroup` of
    ``widths`` -> global max pool -> linear without bias -> logits x ``logit_scale`` (1/9).

    Two changes make it a registry model: the final 3x3 max pool is a global max pool (the same
    at 32x32, where the map is 3x3) and pooling leaves 1-pixel maps alone, so any image size >= 8
    works. No test-time augmentation: the model is this forward pass.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, widths: Sequence[int] = (64, 256, 256),
                 logit_scale: float = 1 / 9) -> None:
        super().__init__()
        if len(widths) != 3 or not all(int(w) == w and w >= 1 for w in widths):
            raise ValueError(f"widths must be three integers >= 1 (got {widths!r}); airbench94: (64, 256, 256)")
        self.whiten = PatchWhitening(in_channels, kernel_size=2)
        groups, width = [], self.whiten.out_channels
        for out in widths:
            groups.append(_ConvGroup(width, int(out)))
            width = int(out)
        self.groups = nn.Sequential(*groups)
        self.head = nn.Linear(width, num_classes, bias=False)
        self.logit_scale = float(logit_scale)

    def forward(self, x: Tensor) -> Tensor:
        x = self.groups(F.gelu(self.whiten(x)))
        return self.head(torch.amax(x, dim=(-2, -1))) * self.logit_scale


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
    if name in AIRBENCH_WIDTHS:
        return WhitenedConvNet(num_classes, in_channels, widths=AIRBENCH_WIDTHS[name])
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
