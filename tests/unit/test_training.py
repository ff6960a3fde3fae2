"""Tests for mixup_inference.core.training.loop: losses, mixup, the four regimes, schedules, exact
reproducibility and resume, non-finite loss handling. CPU, tiny_cnn, synthetic 16x16 data."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixup_inference.core.attacks.pgd import pgd
from mixup_inference.core.data.datasets import random_crop_flip, to_float
from mixup_inference.core.models.networks import build_model
from mixup_inference.core.training.mixing import mixup_batch, sample_beta, soft_cross_entropy
from mixup_inference.core.training import loop
from mixup_inference.core.training.loop import train
from mixup_inference.core.training.config import REGIMES, TrainConfig
from mixup_inference.core.training.state import make_optimizer, make_scheduler
from mixup_inference.core.training.state import LookaheadEMA, TriangularLR, pytorch_hyperparameters
from mixup_inference.core.utils import load_checkpoint, make_generator

NUM_CLASSES = 4


def make_data(n: int, seed: int, size: int = 16) -> tuple[Tensor, Tensor]:
    """Synthetic 4-class uint8 images: a class colour plus a class-oriented sinusoidal pattern,
    plus Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randperm(n, generator=g) % NUM_CLASSES
    colours = torch.tensor([[0.75, 0.3, 0.3], [0.3, 0.75, 0.3], [0.3, 0.3, 0.75], [0.7, 0.7, 0.3]])
    coords = torch.linspace(0, 2 * math.pi, size)
    angle = torch.arange(NUM_CLASSES) * math.pi / NUM_CLASSES
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    pattern = 0.15 * torch.sin(2 * (xx * torch.cos(angle)[:, None, None] + yy * torch.sin(angle)[:, None, None]))
    x = colours[y][:, :, None, None] + pattern[y][:, None] + 0.1 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


@pytest.fixture(scope="module")
def data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (*make_data(256, seed=0), *make_data(256, seed=1))


def fresh_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("tiny_cnn", NUM_CLASSES)


def config(**overrides) -> TrainConfig:
    base = dict(epochs=2, batch_size=32, lr=0.05, schedule="onecycle", weight_decay=5e-4, at_steps=2, seed=0)
    return TrainConfig(**{**base, **overrides})


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


class Tripwire(nn.Module):
    """Wraps a model; on its `trip_at`-th training-mode forward it either raises `Interrupted`
    (a crash) or returns NaN logits. Records the training-mode inputs it sees."""

    class Interrupted(Exception):
        pass

    def __init__(self, net: nn.Module, trip_at: int | None = None, action: str = "raise") -> None:
        super().__init__()
        self.net, self.trip_at, self.action = net, trip_at, action
        self.calls, self.seen = 0, []

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        if self.training:
            self.calls += 1
            self.seen.append(x.detach().clone())
            if self.calls == self.trip_at:
                if self.action == "raise":
                    raise Tripwire.Interrupted(f"interrupted at call {self.calls}")
                return out * float("nan")
        return out


# ---------------------------------------------------------------- losses and mixup


def test_soft_cross_entropy_equals_cross_entropy_for_one_hot() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=g) * 3
    y = torch.randint(0, 5, (16,), generator=g)
    assert torch.allclose(soft_cross_entropy(logits, F.one_hot(y, 5).float()), F.cross_entropy(logits, y), atol=1e-6)


def test_soft_cross_entropy_closed_forms() -> None:
    # Uniform logits: the loss is log C for any target distribution.
    q = torch.softmax(torch.randn(4, 6), dim=1)
    assert math.isclose(soft_cross_entropy(torch.zeros(4, 6), q).item(), math.log(6), rel_tol=1e-6)
    # Linear in the targets: a mixed target gives the mixed loss.
    logits, a, b = torch.randn(3, 4), F.one_hot(torch.tensor([0, 1, 2]), 4).float(), F.one_hot(torch.tensor([3, 3, 0]), 4).float()
    mixed = soft_cross_entropy(logits, 0.3 * a + 0.7 * b)
    assert torch.allclose(mixed, 0.3 * soft_cross_entropy(logits, a) + 0.7 * soft_cross_entropy(logits, b))
    with pytest.raises(ValueError, match="shape"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))


def test_mixup_is_per_example_with_two_independent_permutations() -> None:
    b = 16
    x = torch.rand(b, 3, 4, 4)
    onehot = F.one_hot(torch.arange(b), b).float()  # distinct labels: the permutations are readable from targets
    x_mix, t_mix, lam = mixup_batch(x, onehot, alpha=1.0, generator=make_generator(3))
    assert lam.shape == (b,) and ((lam > 0) & (lam < 1)).all()
    assert lam.std() > 0.1  # one lam per example: they differ within the batch
    assert torch.allclose(t_mix.sum(1), torch.ones(b)) and (t_mix >= 0).all()
    # Row i is lam_i e_p1(i) + (1 - lam_i) e_p2(i) for two permutations; the images mix the same way.
    top2 = t_mix.topk(2, dim=1)
    weights = t_mix.gather(1, top2.indices)
    first = torch.where((weights[:, 0] - lam).abs() < 1e-6, top2.indices[:, 0], top2.indices[:, 1])
    second = torch.where(first == top2.indices[:, 0], top2.indices[:, 1], top2.indices[:, 0])
    assert sorted(first.tolist()) == list(range(b)) and sorted(second.tolist()) == list(range(b))
    assert not torch.equal(first, second)  # independent permutations, not one and its reverse pairing
    lam4 = lam[:, None, None, None]
    assert torch.allclose(x_mix, lam4 * x[first] + (1 - lam4) * x[second], atol=1e-6)
    # Same generator seed, same mix.
    x_again, _, lam_again = mixup_batch(x, onehot, alpha=1.0, generator=make_generator(3))
    assert torch.equal(lam_again, lam) and torch.equal(x_again, x_mix)


@pytest.mark.parametrize("a,b", [(1.0, 1.0), (2.0, 2.0), (0.2, 0.2), (1.0, 3.0), (0.05, 0.5)])
def test_sample_beta_matches_scipy(a: float, b: float) -> None:
    from scipy import stats

    n = 20000
    draws = sample_beta(a, b, (n,), generator=make_generator(0))
    assert draws.shape == (n,) and draws.dtype == torch.float64
    assert ((draws >= 0) & (draws <= 1)).all()
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    # 5 standard errors of the mean / of the variance estimate (var of s^2 <= E[(X-mu)^4] <= var for X in [0,1]).
    assert abs(draws.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(draws.var().item() - var) < 5 * math.sqrt(var / n)
    assert stats.kstest(draws.numpy(), stats.beta(a, b).cdf).pvalue > 1e-3
    assert torch.equal(sample_beta(a, b, (n,), generator=make_generator(0)), draws)  # seeded


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("field,value", [
    ("regime", "adversarial"), ("epochs", 0), ("epochs", 1.5), ("lr", 0.0), ("lr", float("nan")),
    ("batch_size", 0), ("at_steps", 0), ("schedule", "cosine"), ("momentum", 1.0), ("weight_decay", -1.0),
    ("milestones", (150, 100)), ("mixup_alpha", 0.0), ("at_eps", 0.0), ("at_step_size", 0.5), ("seed", -1),
    ("optimizer", "adam"), ("bias_lr_scale", 0.0), ("label_smoothing", 1.0), ("lookahead", "yes"),
    ("augmentation", "autoaugment"), ("whiten_bias_epochs", -1),
])
def test_config_rejects_bad_values_naming_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_config_accepts_yaml_lists_and_round_trips() -> None:
    cfg = TrainConfig(milestones=[10, 20])
    assert cfg.milestones == (10, 20)
    assert TrainConfig(**{**cfg.to_dict(), "milestones": tuple(cfg.to_dict()["milestones"])}) == cfg


# ---------------------------------------------------------------- regimes


@pytest.mark.parametrize("regime", REGIMES)
def test_every_regime_learns_the_synthetic_task(regime: str, data) -> None:
    x_train, y_train, x_test, y_test = data
    model = fresh_model()
    result = train(model, x_train, y_train, config(regime=regime), progress=False)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test.float() / 255).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.6, f"{regime}: held-out accuracy {accuracy:.3f} (chance 0.25)"
    assert result["regime"] == regime and result["epochs"] == 2 and len(result["history"]) == 2
    assert math.isfinite(result["final_loss"]) and result["images_per_second"] > 0


def test_at_trains_on_clean_and_adversarial_halves_within_eps(data) -> None:
    x_train, y_train, _, _ = data
    model = Tripwire(fresh_model())
    cfg = config(regime="at", epochs=1, augment=False)
    train(model, x_train, y_train, cfg, progress=False)
    assert len(model.seen) == len(y_train) // cfg.batch_size
    for inputs in model.seen:
        clean, adv = inputs.chunk(2)
        assert inputs.shape[0] == 2 * cfg.batch_size
        delta = (adv - clean).abs().amax()
        assert 0 < delta <= cfg.at_eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
        # The clean half is the batch itself: every clean image is a training image.
        same = (clean[:, None] == x_train[None].float() / 255).flatten(2).all(2)
        assert same.any(1).all()


@pytest.mark.parametrize("regime", REGIMES)
def test_first_batch_is_built_as_documented(regime: str, data) -> None:
    """Replay the documented recipe and draw order from the seed: data order, augmentation, PGD
    start (labels: the model's own eval-mode prediction), mixup permutations and per-example lams
    (clean half first)."""
    x_train, y_train, _, _ = data
    start = fresh_model()
    cfg = config(regime=regime, epochs=1)
    recorder = Tripwire(copy.deepcopy(start), trip_at=1)
    with pytest.raises(Tripwire.Interrupted):
        train(recorder, x_train, y_train, cfg, progress=False)

    g = make_generator(cfg.seed)
    index = torch.randperm(len(y_train), generator=g)[: cfg.batch_size]
    x = random_crop_flip(to_float(x_train[index]), padding=4, generator=g)
    y = y_train[index]
    onehot = F.one_hot(y, NUM_CLASSES).float()
    if regime == "erm":
        expected = x
    elif regime == "mixup":
        expected = mixup_batch(x, onehot, alpha=cfg.mixup_alpha, generator=g)[0]
    else:
        with torch.no_grad():
            own = copy.deepcopy(start).eval()(x).argmax(1)  # the authors' label: the eval-mode prediction
        assert not torch.equal(own, y)  # (an untrained model: this test tells the two labels apart)
        x_adv = pgd(start, x, own, eps=cfg.at_eps, step_size=cfg.at_step_size, steps=cfg.at_steps, generator=g)
        if regime == "at":
            expected = torch.cat([x, x_adv])
        else:
            expected = torch.cat([mixup_batch(x, onehot, alpha=cfg.mixup_alpha, generator=g)[0],
                                  mixup_batch(x_adv, onehot, alpha=cfg.mixup_alpha, generator=g)[0]])
    assert torch.equal(recorder.seen[0], expected)


# ---------------------------------------------------------------- reproducibility and resume


def test_same_seed_gives_identical_weights_and_other_seed_does_not(data) -> None:
    x_train, y_train, _, _ = data
    start = fresh_model()
    runs = [copy.deepcopy(start) for _ in range(3)]
    for model, seed in zip(runs, (7, 7, 8)):
        train(model, x_train, y_train, config(regime="interpolated_at", epochs=1, seed=seed), progress=False)
    assert_same_state(runs[0], runs[1])
    assert not torch.equal(runs[0].net.head[-1].weight, runs[2].net.head[-1].weight)


def test_resume_after_interruption_equals_uninterrupted_run(data, tmp_path: Path) -> None:
    x_train, y_train, _, _ = data
    cfg = config(regime="interpolated_at", epochs=2)  # every random draw + a per-batch schedule
    steps = len(y_train) // cfg.batch_size
    start = fresh_model()

    straight = Tripwire(copy.deepcopy(start))
    train(straight, x_train, y_train, cfg, checkpoint_dir=tmp_path / "a", progress=False)

    # Crash in the middle of epoch 2; last.pt then holds epoch 1.
    crashed = Tripwire(copy.deepcopy(start), trip_at=steps + 3)
    with pytest.raises(Tripwire.Interrupted):
        train(crashed, x_train, y_train, cfg, checkpoint_dir=tmp_path / "b", log_path=tmp_path / "b.jsonl",
              progress=False)
    ckpt = load_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["config"] == cfg.to_dict() and len(ckpt["history"]) == 1
    assert {"model", "optimizer", "scheduler", "generator"} <= ckpt.keys()

    # Restart in a "new process": a differently initialised model, resumed from the checkpoint.
    restarted = Tripwire(fresh_model(seed=123))
    result = train(restarted, x_train, y_train, cfg, checkpoint_dir=tmp_path / "b", log_path=tmp_path / "b.jsonl",
                   progress=False)
    assert result["resumed_from_epoch"] == 1 and result["epochs"] == 2
    assert_same_state(straight, restarted)
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert {"loss", "accuracy", "lr", "images_per_second", "seconds"} <= rows[0].keys()

    # A finished run returns at once without touching the weights.
    again = train(restarted, x_train, y_train, cfg, checkpoint_dir=tmp_path / "b", progress=False)
    assert again["resumed_from_epoch"] == 2
    assert_same_state(straight, restarted)


def test_step_schedule_run_can_be_extended_exactly(data, tmp_path: Path) -> None:
    x_train, y_train, _, _ = data
    start = fresh_model()
    straight = copy.deepcopy(start)
    train(straight, x_train, y_train, config(regime="mixup", schedule="step", milestones=(1,), epochs=2),
          progress=False)
    extended = copy.deepcopy(start)
    for epochs in (1, 2):
        train(extended, x_train, y_train, config(regime="mixup", schedule="step", milestones=(1,), epochs=epochs),
              checkpoint_dir=tmp_path, progress=False)
    assert_same_state(straight, extended)


def test_resume_refuses_other_architecture_or_regime(data, tmp_path: Path) -> None:
    x_train, y_train, _, _ = data
    train(fresh_model(), x_train, y_train, config(epochs=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="different model architecture"):
        train(build_model("tiny_cnn", NUM_CLASSES + 1), x_train, y_train, config(epochs=1),
              checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="regime 'erm', not 'mixup'"):
        train(fresh_model(), x_train, y_train, config(epochs=1, regime="mixup"), checkpoint_dir=tmp_path,
              progress=False)
    with pytest.raises(ValueError, match="lr"):
        train(fresh_model(), x_train, y_train, config(epochs=1, lr=0.1), checkpoint_dir=tmp_path, progress=False)


# ---------------------------------------------------------------- schedules


def onecycle_lr(step: int, total: int, max_lr: float) -> float:
    """OneCycleLR's cosine schedule (Smith & Topin 2019) with PyTorch's defaults: warm-up over 30%
    from max_lr/25 to max_lr, then annealing to max_lr/25/1e4 at the last step."""
    initial, final = max_lr / 25, max_lr / 25 / 1e4
    peak = 0.3 * total - 1

    def cos(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))

    if step <= peak:
        return cos(initial, max_lr, step / peak)
    return cos(max_lr, final, (step - peak) / (total - 1 - peak))


def test_onecycle_scheduler_lr_sequence() -> None:
    cfg = config(schedule="onecycle", epochs=4, lr=0.2)
    optimizer = make_optimizer(nn.Linear(2, 2), cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([onecycle_lr(i, 20, 0.2) for i in range(20)], rel=1e-9)
    assert lrs[0] == pytest.approx(0.2 / 25) and max(lrs) == pytest.approx(0.2)
    assert lrs[-1] == pytest.approx(0.2 / 25 / 1e4)
    assert optimizer.param_groups[0]["momentum"] == cfg.momentum  # momentum is not cycled


def test_train_steps_onecycle_per_batch_and_step_per_epoch(data) -> None:
    x_train, y_train = data[0][:64], data[1][:64]  # 2 batches per epoch
    history = train(fresh_model(), x_train, y_train, config(schedule="onecycle", epochs=3, lr=0.1),
                    progress=False)["history"]
    assert [row["lr"] for row in history] == pytest.approx([onecycle_lr(i, 6, 0.1) for i in (0, 2, 4)])
    assert [row["lr_end"] for row in history] == pytest.approx([onecycle_lr(i, 6, 0.1) for i in (1, 3, 5)])

    history = train(fresh_model(), x_train, y_train,
                    config(schedule="step", epochs=4, lr=0.1, milestones=(2, 3)), progress=False)["history"]
    assert [row["lr"] for row in history] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert [row["lr_end"] for row in history] == [row["lr"] for row in history]


# ---------------------------------------------------------------- non-finite loss


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(data, tmp_path: Path) -> None:
    x_train, y_train = data[0][:128], data[1][:128]  # 4 batches per epoch
    model = Tripwire(fresh_model(), trip_at=4 + 2, action="nan")
    with pytest.raises(RuntimeError, match=r"epoch 2/2, batch 2/4.*last good checkpoint .*last.pt is kept"):
        train(model, x_train, y_train, config(epochs=2), checkpoint_dir=tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    # The NaN batch never stepped the optimiser: the live weights are still finite too.
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert len(model.seen) == 6


def test_nan_loss_between_host_reads_is_reported_with_its_batch(data, tmp_path: Path, monkeypatch) -> None:
    """With the accelerator's sparse host reads (every 50 batches, here more than an epoch) the first
    NaN batch is still the one named, and the epoch it spoiled writes no checkpoint."""
    monkeypatch.setattr(loop, "host_sync_interval", lambda device: 50)
    x_train, y_train = data[0][:128], data[1][:128]  # 4 batches per epoch
    model = Tripwire(fresh_model(), trip_at=4 + 2, action="nan")
    with pytest.raises(RuntimeError, match=r"loss is nan at epoch 2/2, batch 2/4.*last good checkpoint .*is kept"):
        train(model, x_train, y_train, config(epochs=2), checkpoint_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert len(model.seen) == 8  # the epoch ran to its end before the read that found the NaN


def test_nan_loss_without_checkpoint_says_so(data) -> None:
    model = Tripwire(fresh_model(), trip_at=1, action="nan")
    with pytest.raises(RuntimeError, match="epoch 1/1, batch 1/.*no checkpoint was written"):
        train(model, data[0][:64], data[1][:64], config(epochs=1), progress=False)


def test_bad_data_raise() -> None:
    x, y = make_data(64, 0)
    with pytest.raises(ValueError, match="train_x must be a uint8"):
        train(fresh_model(), x.float(), y, config(), progress=False)
    with pytest.raises(ValueError, match="batch_size 128 is larger"):
        train(fresh_model(), x, y, config(batch_size=128), progress=False)
    with pytest.raises(ValueError, match="labels in"):
        train(fresh_model(), x, y + 1, config(), progress=False)


# ---------------------------------------------------------------- the fast recipe (airbench94's ingredients)

FAST = dict(optimizer="sgd_decoupled", lr=11.5, momentum=0.85, weight_decay=0.0153, bias_lr_scale=64.0,
            schedule="triangular", lookahead=True, augmentation="flip_translate", whiten_bias_epochs=1,
            init="pytorch")


def fast_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("airbench94_narrow", NUM_CLASSES)


@pytest.mark.parametrize("regime", ["mixup", "at", "interpolated_at"])
def test_label_smoothing_is_for_erm_only(regime: str) -> None:
    with pytest.raises(ValueError, match="regimes.erm"):
        TrainConfig(regime=regime, label_smoothing=0.2)


def test_erm_label_smoothing_targets_match_cross_entropys() -> None:
    x, y = to_float(make_data(8, seed=0)[0]), make_data(8, seed=0)[1]
    cfg = TrainConfig(regime="erm", label_smoothing=0.2)
    inputs, targets = loop._training_batch(fresh_model(), x, y, NUM_CLASSES, cfg, make_generator(0))
    logits = torch.randn(8, NUM_CLASSES)
    assert torch.equal(inputs, x)
    assert torch.allclose(soft_cross_entropy(logits, targets), F.cross_entropy(logits, y, label_smoothing=0.2))


def test_triangular_schedule_is_airbenchs() -> None:
    f = TriangularLR(100)
    assert f(0) == pytest.approx(0.2) and f(23) == pytest.approx(1.0) and f(100) == pytest.approx(0.07)
    assert f(10) == pytest.approx(0.2 + 0.8 * 10 / 23) and f(60) == pytest.approx(1 - 0.93 * 37 / 77)
    values = [f(s) for s in range(101)]
    assert max(values) == values[23] and all(a < b for a, b in zip(values[:23], values[1:24]))
    assert all(a > b for a, b in zip(values[23:], values[24:]))


def test_decoupled_hyperparameters_and_the_batchnorm_bias_group() -> None:
    """airbench94's units: lr 11.5 and decay 0.0153 per 1,024 inputs, k = 1024 (1 + 1 / (1 - m));
    for the mean loss over n inputs PyTorch's lr is lr n / k and the decay per step
    weight_decay n / k; BatchNorm biases get 64x the lr and the same decay per step."""
    k = 1024 * (1 + 1 / 0.15)
    for regime, n in (("erm", 512), ("mixup", 512), ("at", 1024), ("interpolated_at", 1024)):
        cfg = TrainConfig(**{**FAST, "regime": regime, "batch_size": 512})
        lr, decay = pytorch_hyperparameters(cfg)
        assert lr == pytest.approx(11.5 * n / k) and decay == pytest.approx(0.0153 * n / k)
    cfg = TrainConfig(**{**FAST, "batch_size": 512})
    model = fast_model()
    rest, biases = make_optimizer(model, cfg).param_groups
    lr, decay = pytorch_hyperparameters(cfg)
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in biases["params"]} == bn_biases and not bn_biases & {id(p) for p in rest["params"]}
    assert biases["lr"] == pytest.approx(64 * lr) and rest["lr"] == pytest.approx(lr)
    assert biases["lr"] * biases["weight_decay"] == pytest.approx(decay)
    assert rest["lr"] * rest["weight_decay"] == pytest.approx(decay)
    assert rest["nesterov"] and rest["momentum"] == 0.85
    # The plain optimizer is still one group in PyTorch's units, Nesterov off.
    (group,) = make_optimizer(model, TrainConfig(lr=0.1, weight_decay=5e-4)).param_groups
    assert group["lr"] == 0.1 and group["weight_decay"] == 5e-4 and not group["nesterov"]


def test_lookahead_pulls_toward_the_average_and_ends_on_it() -> None:
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = LookaheadEMA(model, total_steps=10)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.step(model, 4)  # not a multiple of 5: nothing moves
    assert torch.equal(model.weight, torch.full((1, 3), 3.0))
    ema.step(model, 5)  # decay 0.95^5 (5/10)^3: the model is set to the average
    decay = 0.95**5 * 0.5**3
    assert torch.allclose(model.weight, torch.full((1, 3), decay * 1 + (1 - decay) * 3))
    with torch.no_grad():
        model.weight.fill_(7.0)
    before = ema.average["weight"].clone()
    ema.step(model, 10)  # the last step: the model becomes the average, which does not move
    assert torch.equal(model.weight, before) and torch.equal(ema.average["weight"], before)


def test_fast_recipe_fits_the_whitening_from_its_seed_and_trains_only_its_bias_early(data) -> None:
    x_train, y_train, _, _ = data
    cfg = config(**FAST, regime="erm", epochs=2, label_smoothing=0.2)
    runs = []
    for init_seed in (0, 1):  # different random starts: the fit depends only on the data and the config seed
        model = fast_model(init_seed)
        summary = train(model, x_train, y_train, cfg, progress=False, device="cpu")
        runs.append((model, summary))
    (a, sa), (b, sb) = runs
    assert sa["whitening"] == sb["whitening"] and sa["whitening"]["images"] == len(y_train)
    assert torch.equal(a.net.whiten.weight, b.net.whiten.weight)
    # The whitening weight is the fit (not trained); its bias trained during the first epoch only.
    refit = fast_model(5)
    loop.fit_whitening(refit, x_train, seed=cfg.seed, device=torch.device("cpu"))
    assert torch.equal(a.net.whiten.weight, refit.net.whiten.weight)
    assert not torch.equal(a.net.whiten.bias, refit.net.whiten.bias)
    other_seed = fast_model(0)
    loop.fit_whitening(other_seed, x_train, seed=cfg.seed + 1, device=torch.device("cpu"), n_images=100)
    assert not torch.equal(other_seed.net.whiten.weight, refit.net.whiten.weight)


@pytest.mark.parametrize("regime", ["erm", "interpolated_at"])
def test_fast_recipe_resumes_bit_exactly(regime: str, data, tmp_path: Path) -> None:
    """Every new piece of state (lookahead average, whitening fit, the bias freeze, the triangular
    schedule, the alternating flips, Nesterov momentum of two groups) survives a crash mid-epoch."""
    x_train, y_train, _, _ = data
    extra = {"label_smoothing": 0.2} if regime == "erm" else {}
    cfg = config(**FAST, **extra, regime=regime, epochs=3)
    steps = len(y_train) // cfg.batch_size
    start = fast_model()
    straight = Tripwire(copy.deepcopy(start))
    summary = train(straight, x_train, y_train, cfg, checkpoint_dir=tmp_path / "a", progress=False)
    crashed = Tripwire(copy.deepcopy(start), trip_at=steps + 3)  # in epoch 2, after the bias froze
    with pytest.raises(Tripwire.Interrupted):
        train(crashed, x_train, y_train, cfg, checkpoint_dir=tmp_path / "b", progress=False)
    ckpt = load_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["whitening"] == summary["whitening"]
    assert ckpt["lookahead"].keys() == {k for k, v in straight.state_dict().items() if v.is_floating_point()}
    restarted = Tripwire(fast_model(seed=123))  # other weights, other (unfitted) whitening
    result = train(restarted, x_train, y_train, cfg, checkpoint_dir=tmp_path / "b", progress=False)
    assert result["resumed_from_epoch"] == 1 and result["whitening"] == summary["whitening"]
    assert_same_state(straight, restarted)
    assert [r["loss"] for r in result["history"]] == [r["loss"] for r in summary["history"]]
    # the inputs of the resumed epochs (augmentation, mixing, PGD) are the uninterrupted run's
    tail = len(restarted.seen)
    assert all(torch.equal(p, q) for p, q in zip(straight.seen[-tail:], restarted.seen))


def test_old_checkpoints_without_the_new_fields_still_resume(data, tmp_path: Path) -> None:
    x_train, y_train, _, _ = data
    cfg = config(epochs=2, schedule="step", milestones=(5,))  # a step schedule may be extended
    train(fresh_model(), x_train, y_train, config(epochs=1, schedule="step", milestones=(5,)),
          checkpoint_dir=tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    for key in ("optimizer", "bias_lr_scale", "label_smoothing", "lookahead", "augmentation", "whiten_bias_epochs"):
        del ckpt["config"][key]
    del ckpt["lookahead"], ckpt["whitening"]
    torch.save(ckpt, tmp_path / "last.pt")
    assert train(fresh_model(), x_train, y_train, cfg, checkpoint_dir=tmp_path, progress=False)["epochs"] == 2
    with pytest.raises(ValueError, match="lookahead"):
        train(fresh_model(), x_train, y_train, config(epochs=2, schedule="step", milestones=(5,), lookahead=True),
              checkpoint_dir=tmp_path, progress=False)
