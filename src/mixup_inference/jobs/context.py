"""What the attack and evaluation jobs share: the job settings built once from the config (`JobContext`),
the eval model, the defense as the evaluation runs it, and the attacked points of the adaptive and
robust jobs (`AttackedPoints`). jobs.stages and jobs.robust both build on these."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from ..core.defenses.averaging import predict_probs
from ..core.data.datasets import load_dataset
from ..core.defenses.specs import apply_defense
from ..core.metrics import accuracy_with_ci
from ..core.models.files import load_model
from ..core.models.speed import enable_cudnn_benchmark, resolve_speed, speed_model
from ..core.utils import derive_seed, make_generator, resolve_device
from . import artifacts
from .artifacts import Evaluation, EvaluationMeta
from .batching import batches, resolve_batch_size, resolve_chunk_size
from .points import attack_labels, attacked_points, run_pool

__all__ = ["AttackedPoints", "JobContext", "defend", "eval_model", "load_attacked_points", "predict",
           "write_evaluation"]


@dataclass(frozen=True)
class JobContext:
    """The settings the attack, evaluate, adaptive and robust jobs share, from the config (the workflow's
    common.smk `job_params` builds them, one `job` param per rule; each rule passes the ones it reads, so a
    setting it does not read never reruns it).

    Attributes:
        seed: the config seed (every generator is derived from it).  device: "auto", "cpu", "cuda", ...
        speed: the config's `speed:` section (core.models.speed; None: the defaults).
        batch_size: attacked images per batch (config attacks.batch_size; "auto": per device).
        chunk_size: defense chunk size (config defenses.chunk_size; "auto"/None: per device).
        n_samples: the defense's executions when evaluating (config defenses.n_samples).
        pool_per_class: MI pool images per class (datasets.<dataset>.pool_per_class).
        n_subset: the run's test subset, the points every attack job attacks (datasets.<dataset>.n_test).
    """

    seed: int = 0
    device: str = "auto"
    speed: Mapping[str, Any] | None = None
    batch_size: int | str = "auto"
    chunk_size: int | str | None = "auto"
    n_samples: int | None = None
    pool_per_class: int | None = None
    n_subset: int | None = None

    def need(self, name: str) -> Any:
        """A setting the job cannot run without; a ValueError naming it if the caller left it out."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"this job needs the job setting {name!r} (JobContext; the workflow's job_params "
                             f"of its rule must name it); given: {[f.name for f in fields(self) if getattr(self, f.name) is not None]}")
        return value


def eval_model(model_path: str, device: torch.device, num_classes: int, speed: Mapping[str, Any] | None) -> nn.Module:
    """The job's model for attacks and evaluations, with the config's eval fast paths (fp32 unless
    `speed.eval_bf16`); prints what it uses, for the job log."""
    enable_cudnn_benchmark(device)
    resolved = resolve_speed(dict(speed) if speed is not None else None, device, purpose="eval")
    print(f"speed: {resolved}")
    return speed_model(load_model(model_path, device, num_classes=num_classes), resolved)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's predicted class of every image of x, in batches."""
    return torch.cat([predict_probs(model, x[s]) for s in batches(len(x), batch_size)]).argmax(1)


def defend(model: nn.Module, x: torch.Tensor, defense: str, setting: str, *, pool: tuple[torch.Tensor, torch.Tensor],
           n_samples: int, chunk_size: int | None, seed: int, device: torch.device) -> torch.Tensor:
    """The defense as the evaluation runs it (float32 probabilities on the CPU): N = `n_samples`
    executions drawn from its evaluation generator, `derive_seed(seed, "defense", defense, setting)`,
    the same for every job that evaluates this setting (oblivious, adaptive or robust)."""
    generator = make_generator(derive_seed(seed, "defense", defense, setting), device)
    return apply_defense(model, x, defense, setting, pool=pool, n_samples=n_samples, chunk_size=chunk_size,
                         generator=generator).float().cpu()


def write_evaluation(evaluation: Evaluation, out_path: str | os.PathLike, title: str) -> None:
    """Save one evaluation artifact and print its accuracy with the 95% interval, for the job log."""
    artifacts.save(evaluation, out_path)
    acc = accuracy_with_ci(evaluation.probs, evaluation.y)
    print(f"{title}: accuracy {acc['accuracy']:.4f} [{acc['ci_low']:.4f}, {acc['ci_high']:.4f}] (n={acc['n']})")


@dataclass(frozen=True)
class AttackedPoints:
    """What an adaptive or robust job attacks and defends: the eval model on `device`, the first
    n_test points of the run's test subset (x on the device, y and target on the CPU), the bare
    model's clean prediction on them, the MI pool, and the resolved batch and chunk sizes."""

    model: nn.Module
    device: torch.device
    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor
    clean_pred: torch.Tensor
    pool: tuple[torch.Tensor, torch.Tensor]
    batch_size: int
    chunk_size: int | None
    seed: int

    def labels(self, attack: Mapping[str, Any]) -> torch.Tensor:
        """The labels the attack is given (points.attack_labels)."""
        return attack_labels(dict(attack), self.clean_pred, self.y, self.target)

    def defend(self, x: torch.Tensor, defense: str, setting: str, n_samples: int) -> torch.Tensor:
        """The defense on x as the evaluation runs it (`defend`, its evaluation generator)."""
        return defend(self.model, x, defense, setting, pool=self.pool, n_samples=n_samples,
                      chunk_size=self.chunk_size, seed=self.seed, device=self.device)

    def evaluate(self, x_adv: torch.Tensor, meta: EvaluationMeta, out_path: str | os.PathLike, *, targeted: bool,
                 title: str, plain_chunk_size: int | None) -> None:
        """The defense of `meta` (N = meta.n_samples, its evaluation generator) and the bare model
        (in chunks of `plain_chunk_size`) on the adversarial `x_adv`, written as an evaluation artifact."""
        probs = self.defend(x_adv, meta.defense, meta.setting, meta.n_samples)
        plain = predict_probs(self.model, x_adv, chunk_size=plain_chunk_size).float().cpu()
        target = self.target if targeted else torch.full_like(self.y, -1)
        write_evaluation(Evaluation(probs, plain, self.y, target, meta), out_path, title)


def load_attacked_points(data_path: str, model_path: str, *, n_test: int, job: JobContext) -> AttackedPoints:
    """Load the data and the model, and take the first `n_test` points of the run's test subset (of
    size job.n_subset, the dataset's n_test, so they are among the oblivious evaluation's points) and
    the run's MI pool: the start of every adaptive and robust job."""
    device = resolve_device(job.device)
    batch_size, chunk_size = resolve_batch_size(job.batch_size, device), resolve_chunk_size(job.chunk_size)
    data = load_dataset(data_path)
    model = eval_model(model_path, device, data.num_classes, job.speed)
    _, x, y, target = attacked_points(data, job.need("n_subset"), job.seed)
    x, y, target = x[:n_test].to(device), y[:n_test], target[:n_test]
    pool = run_pool(data, job.need("pool_per_class"), job.seed, device)
    return AttackedPoints(model=model, device=device, x=x, y=y, target=target,
                          clean_pred=predict(model, x, batch_size), pool=pool, batch_size=batch_size,
                          chunk_size=chunk_size, seed=job.seed)
