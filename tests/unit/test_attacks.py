"""Attacks: PGD invariants and strength on a small model trained here, and the adaptive attacks
against Mixup Inference (eps-ball, reductions to PGD at lam = 1, Eq. 24's shared step, strength)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixup_inference.core.attacks.pgd import adaptive_pgd, eot_pgd, pgd, pgd_loop
from mixup_inference.core.defenses.mi import mixup_inference
from mixup_inference.core.utils import make_generator

NUM_CLASSES = 4
# class-dependent mean colours, close enough that an L-inf budget of 16/255 can swap classes
MEANS = 0.5 + 0.04 * torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])
EPS, STEP = 16 / 255, 4 / 255


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py: one torch thread per module


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(NUM_CLASSES, (n,), generator=generator)
    x = (MEANS[y][:, :, None, None] + 0.15 * torch.randn(n, 3, 8, 8, generator=generator)).clamp(0, 1)
    return x, y


@pytest.fixture(scope="module")
def problem():
    """A tiny CNN trained with mixup (about a second on CPU) on an easy 4-class colour problem."""
    generator = make_generator(0)
    train_x, train_y = make_data(1024, generator)
    test_x, test_y = make_data(128, generator)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, NUM_CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(200):
        i = torch.randint(1024, (64,), generator=generator)
        lam = torch.rand(64, 1, 1, 1, generator=generator)
        perm = torch.randperm(64, generator=generator)
        mixed = lam * train_x[i] + (1 - lam) * train_x[i][perm]
        target = lam.view(-1, 1) * F.one_hot(train_y[i], NUM_CLASSES) + \
            (1 - lam.view(-1, 1)) * F.one_hot(train_y[i][perm], NUM_CLASSES)
        loss = -(target * F.log_softmax(model(mixed), 1)).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    for parameter in model.parameters():
        parameter.grad = None
    with torch.no_grad():
        prediction = model(test_x).argmax(1)
    return dict(model=model, x=test_x, y=test_y, yhat=prediction, pool_x=train_x[:200], pool_y=train_y[:200])


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def assert_in_ball(x_adv, x, eps):
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= eps + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


# --------------------------------------------------------------------------------------------
# PGD
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_loop_steps_by_the_sign_and_clamps_delta_then_image(targeted):
    """Closed form: a constant gradient moves every pixel by `steps` signed steps until the eps-ball
    stops it (ascent untargeted, descent targeted); pixels near 0 or 1 stop at the image range."""
    center = torch.tensor([[0.5, 0.5, 0.01, 0.99]])
    gradient = lambda x_adv: torch.tensor([[3.0, -0.5, -1.0, 1.0]]).expand_as(x_adv)  # noqa: E731
    x_adv = pgd_loop(gradient, center.clone(), center, eps=0.05, step_size=0.02, steps=2, targeted=targeted)
    s = -1.0 if targeted else 1.0
    expected = (center + (s * torch.tensor([[1.0, -1, -1, 1]]) * 0.04)).clamp(0, 1)
    torch.testing.assert_close(x_adv, expected)
    x_far = pgd_loop(gradient, center.clone(), center, eps=0.05, step_size=0.02, steps=10, targeted=targeted)
    torch.testing.assert_close(x_far, (center + s * torch.tensor([[1.0, -1, -1, 1]]) * 0.05).clamp(0, 1))


def test_pgd_untargeted_breaks_the_model_within_the_ball(problem):
    model, x, y = problem["model"], problem["x"], problem["y"]
    clean = accuracy(model, x, y)
    assert clean > 0.85
    x_adv = pgd(model, x, problem["yhat"], eps=EPS, step_size=STEP, steps=10, generator=make_generator(1))
    assert_in_ball(x_adv, x, EPS)
    assert accuracy(model, x_adv, y) < 0.2
    # more budget, more damage; no budget, no change
    weak = pgd(model, x, problem["yhat"], eps=EPS / 4, step_size=STEP / 4, steps=10, generator=make_generator(1))
    assert accuracy(model, x_adv, y) < accuracy(model, weak, y) <= clean
    assert torch.equal(pgd(model, x, problem["yhat"], eps=0.0, step_size=STEP, steps=3), x)


def test_pgd_targeted_reaches_targets(problem):
    model, x, y = problem["model"], problem["x"], problem["y"]
    target = (y + 1 + torch.randint(NUM_CLASSES - 1, y.shape, generator=make_generator(2))) % NUM_CLASSES
    x_adv = pgd(model, x, target, eps=EPS, step_size=STEP, steps=10, targeted=True, generator=make_generator(3))
    assert_in_ball(x_adv, x, EPS)
    assert accuracy(model, x_adv, target) > 0.7
    assert accuracy(model, x, target) < 0.1


def test_pgd_restores_mode_leaves_param_grads_and_works_under_no_grad(problem):
    model, x, yhat = problem["model"], problem["x"][:16], problem["yhat"][:16]
    model.train()
    weight = next(model.parameters())
    weight.grad = torch.full_like(weight, 7.0)
    with torch.no_grad():
        x_adv = pgd(model, x, yhat, eps=EPS, step_size=STEP, steps=2, generator=make_generator(4))
    assert model.training
    model.eval()
    assert torch.equal(weight.grad, torch.full_like(weight, 7.0))
    assert all(p.grad is None for p in list(model.parameters())[1:])
    weight.grad = None
    assert not torch.equal(x_adv, x)


def test_pgd_is_deterministic_given_the_generator(problem):
    model, x, yhat = problem["model"], problem["x"][:16], problem["yhat"][:16]
    run = lambda seed: pgd(model, x, yhat, eps=EPS, step_size=STEP, steps=3, generator=make_generator(seed))
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))
    # without random start the attack is deterministic whatever the generator
    fixed = [pgd(model, x, yhat, eps=EPS, step_size=STEP, steps=3, random_start=False, generator=make_generator(s))
             for s in (5, 6)]
    assert torch.equal(*fixed)


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=-0.1, step_size=0.01, steps=1), "eps must be >= 0"),
    (dict(eps=0.1, step_size=0.0, steps=1), "step_size must be > 0"),
    (dict(eps=0.1, step_size=0.01, steps=0), "steps must be"),
    (dict(eps=0.01, step_size=0.1, steps=1), "must be <= 2 x eps"),
])
def test_pgd_invalid_arguments(problem, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pgd(problem["model"], problem["x"][:2], problem["yhat"][:2], **kwargs)


# --------------------------------------------------------------------------------------------
# Adaptive attacks against MI
# --------------------------------------------------------------------------------------------

def attack_kwargs(problem, **overrides):
    kwargs = dict(lam=0.5, mode="ol", n_adaptive=4, eps=EPS, step_size=STEP, steps=5)
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize("attack", [adaptive_pgd, eot_pgd])
@pytest.mark.parametrize("mode, targeted", [("ol", False), ("pl", True)])
def test_adaptive_attacks_stay_in_ball_and_are_deterministic(problem, attack, mode, targeted):
    model, x, yhat = problem["model"], problem["x"][:32], problem["yhat"][:32]
    pool = problem["pool_x"], problem["pool_y"]
    run = lambda seed: attack(model, x, yhat, *pool, generator=make_generator(seed), targeted=targeted,
                              **attack_kwargs(problem, mode=mode))
    x_adv = run(7)
    assert_in_ball(x_adv, x, EPS)
    assert torch.equal(x_adv, run(7))
    assert not torch.equal(x_adv, run(8))
    assert not model.training and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("attack, n_adaptive", [(adaptive_pgd, 3), (eot_pgd, 1), (eot_pgd, 3)])
def test_adaptive_attacks_reduce_to_pgd_without_mixing(problem, attack, n_adaptive):
    # lam = 1: every mixed copy is x itself, so both attacks are plain PGD. In float64, so that
    # summing N identical gradients cannot flip the sign of a component that is ~0 by rounding.
    model, x, yhat = copy.deepcopy(problem["model"]).double(), problem["x"][:32].double(), problem["yhat"][:32]
    reference = pgd(model, x, yhat, eps=EPS, step_size=STEP, steps=5, random_start=False)
    x_adv = attack(model, x, yhat, problem["pool_x"].double(), problem["pool_y"], random_start=False,
                   generator=make_generator(9), **attack_kwargs(problem, lam=1.0, n_adaptive=n_adaptive))
    assert x_adv.dtype == torch.float64
    assert torch.allclose(x_adv, reference, atol=1e-12)


def test_adaptive_pgd_copies_share_one_signed_step(problem):
    # Eq. 24: all copies of an input take the same step, so (without random start and away from
    # the [0, 1] bounds) the averaged perturbation is a whole number of steps; independent
    # per-copy steps would average to fractions of a step.
    model = problem["model"]
    x = 0.3 + 0.4 * torch.rand(16, 3, 8, 8, generator=make_generator(10))
    yhat = model(x).argmax(1).detach()
    x_adv = adaptive_pgd(model, x, yhat, problem["pool_x"], problem["pool_y"], random_start=False,
                         generator=make_generator(11), **attack_kwargs(problem, n_adaptive=5, steps=3, eps=0.1))
    steps_taken = (x_adv - x) / STEP
    assert torch.allclose(steps_taken, steps_taken.round(), atol=1e-4)
    assert (steps_taken.round().abs() % 2 == 1).float().mean() > 0.5  # odd after 3 steps unless a sign was 0


def mi_ol_loss_and_accuracy(problem, x_adv) -> tuple[float, float]:
    probs = mixup_inference(problem["model"], x_adv, problem["pool_x"], problem["pool_y"], lam=0.5, n_samples=32,
                            mode="ol", generator=make_generator(12))
    y = problem["y"]
    return -probs.gather(1, y[:, None]).log().mean().item(), (probs.argmax(1) == y).float().mean().item()


def test_adaptive_attacks_are_at_least_as_strong_against_mi_as_oblivious_pgd(problem):
    model, x, yhat = problem["model"], problem["x"], problem["yhat"]
    pool = problem["pool_x"], problem["pool_y"]
    budget = dict(eps=8 / 255, step_size=2 / 255, steps=10)
    clean_loss, clean_acc = mi_ol_loss_and_accuracy(problem, x)
    oblivious_loss, _ = mi_ol_loss_and_accuracy(problem, pgd(model, x, yhat, generator=make_generator(13), **budget))
    for attack in (eot_pgd, adaptive_pgd):
        x_adv = attack(model, x, yhat, *pool, lam=0.5, mode="ol", n_adaptive=8, generator=make_generator(13), **budget)
        loss, acc = mi_ol_loss_and_accuracy(problem, x_adv)
        assert loss > clean_loss + 0.1 and acc < clean_acc - 0.2
        assert loss >= oblivious_loss - 0.01  # MI-defended loss: at least oblivious PGD's, up to MC noise


@pytest.mark.parametrize("attack", [adaptive_pgd, eot_pgd])
@pytest.mark.parametrize("overrides, message", [
    (dict(lam=0.0), "lam must be in"),
    (dict(n_adaptive=0), "n_adaptive"),
    (dict(mode="both"), "mode must"),
    (dict(step_size=1.0), "must be <= 2 x eps"),
])
def test_adaptive_attacks_invalid_arguments(problem, attack, overrides, message):
    with pytest.raises(ValueError, match=message):
        attack(problem["model"], problem["x"][:2], problem["yhat"][:2], problem["pool_x"], problem["pool_y"],
               **attack_kwargs(problem, **overrides))


def test_auto_attack_batch_and_chunk_sizes_resolve_per_device():
    from mixup_inference.jobs.batching import AUTO_ATTACK_BATCH, resolve_batch_size, resolve_chunk_size

    assert resolve_batch_size("auto", torch.device("cpu")) == AUTO_ATTACK_BATCH["cpu"]
    assert resolve_batch_size("auto", torch.device("cuda", 1)) == AUTO_ATTACK_BATCH["cuda"]
    assert resolve_batch_size(7, torch.device("cpu")) == 7
    assert resolve_chunk_size("auto") is None and resolve_chunk_size(None) is None  # the defenses' default
    assert resolve_chunk_size(96) == 96
