"""GPU-ready hot paths, checked on a CPU: the attack steps and the defense chunks read nothing back
to the host (no .item(), .tolist(), bool(tensor), .cpu(), ...), which on a GPU would stall the
device at every step. Counted with a TorchFunctionMode: the number of host reads of a call must not
grow with its number of steps or chunks (the argument checks at entry may read a few values once)."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from mixup_inference.core.attacks.defended import eot_pgd_through_defense
from mixup_inference.core.attacks.pgd import adaptive_pgd, eot_pgd, pgd
from mixup_inference.core.defenses.specs import DEFENSES, parse_setting
from mixup_inference.core.models.networks import build_model
from mixup_inference.core.training.config import TrainConfig

HOST_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
              torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.cpu, torch.Tensor.numpy,
              torch.Tensor.nonzero, torch.nonzero}


class HostReads(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def host_reads(call) -> int:
    with HostReads() as mode:
        call()
    return mode.count


def setup():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("tiny_cnn", 4).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 16, 16, generator=g)
    y = torch.randint(0, 4, (8,), generator=g)
    pool_x, pool_y = torch.rand(20, 3, 16, 16, generator=g), torch.arange(20) % 4
    return model, x, y, pool_x, pool_y


def test_attack_steps_read_nothing_back_to_the_host():
    model, x, y, pool_x, pool_y = setup()
    attacks = {
        "pgd": lambda steps: pgd(model, x, y, eps=0.03, step_size=0.01, steps=steps,
                                 generator=torch.Generator().manual_seed(1)),
        "adaptive_pgd": lambda steps: adaptive_pgd(model, x, y, pool_x, pool_y, lam=0.5, mode="ol", n_adaptive=3,
                                                   eps=0.03, step_size=0.01, steps=steps,
                                                   generator=torch.Generator().manual_seed(1)),
        "eot_pgd": lambda steps: eot_pgd(model, x, y, pool_x, pool_y, lam=0.5, mode="ol", n_adaptive=3, eps=0.03,
                                         step_size=0.01, steps=steps, generator=torch.Generator().manual_seed(1)),
    }
    for name, attack in attacks.items():
        assert host_reads(lambda: attack(1)) == host_reads(lambda: attack(6)), name


SETTINGS = {"none": "plain", "mi_pl": "lam=0.5", "mi_ol": "lam=0.5", "mi_combined": "pl=0.5_ol=0.4_th=0.2",
            "gaussian": "sigma=0.04", "rotation": "deg=20", "xie": "size=10-14", "xie_resize": "size=10-14",
            "guo": "size=10-14"}


def test_defense_chunks_read_nothing_back_to_the_host():
    model, x, _y, pool_x, pool_y = setup()
    assert set(SETTINGS) == set(DEFENSES)
    for defense, setting in SETTINGS.items():
        kwargs = parse_setting(defense, setting)
        if defense not in ("none", "mi_combined"):
            kwargs["n_samples"] = 6
        args = (model, x, pool_x, pool_y) if DEFENSES[defense].needs_pool else (model, x)

        def run(chunk_size: int) -> None:
            DEFENSES[defense](*args, **kwargs, generator=torch.Generator().manual_seed(2), chunk_size=chunk_size)

        # 48 copies (8 inputs x 6) in 1 chunk vs 48 chunks
        assert host_reads(lambda: run(1024)) == host_reads(lambda: run(1)), defense


def test_training_reads_the_loss_back_once_per_sync_interval(monkeypatch):
    """On an accelerator the epoch reads its loss back every `host_sync_interval` batches (checked
    here by giving the CPU the accelerator's interval): the reads of an epoch do not grow with its
    batches while they stay under the interval."""
    from mixup_inference.core.training import loop

    monkeypatch.setattr(loop, "host_sync_interval", lambda device: 50)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 3, 16, 16, generator=g) * 255).to(torch.uint8)
    y = torch.arange(64) % 4

    def run(n_images: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_model("tiny_cnn", 4)
        config = TrainConfig(regime="mixup", epochs=1, batch_size=8, lr=0.01, schedule="onecycle", seed=0)
        loop.train(model, x[:n_images], y[:n_images], config, progress=False)

    assert host_reads(lambda: run(16)) == host_reads(lambda: run(64))  # 2 batches vs 8


def test_eot_pgd_through_every_defense_reads_nothing_back_per_step_but_the_switch():
    """The adaptive EOT PGD (core.attacks.defended) through every randomized defense: no host read per step
    (MI's pool class groups are checked once, before the steps), except MI-Combined's switch
    (bool(flagged.any()), so that MI-OL draws only for the flagged inputs, as the defense does): one
    read per step, pinned here so that it cannot grow unnoticed."""
    model, x, y, pool_x, pool_y = setup()
    per_step = {"mi_combined": 1}
    for defense, setting in SETTINGS.items():
        if defense == "none":
            continue

        def attack(steps: int) -> None:
            eot_pgd_through_defense(model, x, y, defense, setting, pool=(pool_x, pool_y), n_samples=3, eot=2, eps=0.03,
                            step_size=0.01, steps=steps, generator=torch.Generator().manual_seed(1), chunk_size=10)

        growth = host_reads(lambda: attack(6)) - host_reads(lambda: attack(1))
        assert growth == 5 * per_step.get(defense, 0), defense
