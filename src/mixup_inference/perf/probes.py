"""Time a few steps of each job kind on this machine: the unit costs (perf.workmodel.UnitCosts) of one
data set of a config, in CPU seconds of this process on one thread (``time.process_time``), so that
other processes sharing the cores change them less than they change wall time. (They still change
them: processes on the other cores share the caches and the memory bandwidth. The report records the
load average around the probes.)

What is timed, each with the code the jobs run and the config's sizes and precisions:

- a training step of every model the run trains (core.training.train on one batch for 1 epoch, then
  for 1 + k epochs: the difference / k is a step, the rest the set-up), with the speed policy of the train jobs (core.models.speed.resolve_speed: bf16 autocast where the CPU has it);
- a forward+backward per image of the first adversarial attack at the attack batch size (fp32);
- a forward per image of the bare model at the defense chunk size (fp32);
- every defense the run evaluates, at a few executions per point (forward), and every defense its
  robustness evaluation attacks through, at 2 executions (forward+backward);
- a job's start-up: one real ``python -c`` that imports torch and the library's job modules (and
  Snakemake's script module where installed, as a Snakemake job does) and loads the data set file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

import mixup_inference

from ..core.attacks.specs import parse_attack
from ..core.data.datasets import CACHE_FORMAT, ImageDataset, load_dataset, to_float
from ..core.defenses.averaging import default_chunk_size, predict_probs
from ..core.defenses.specs import DEFENSES, apply_defense
from ..core.models.networks import build_model
from ..core.models.speed import resolve_speed, speed_model
from ..core.training.config import TrainConfig
from ..core.training.loop import train
from ..core.utils import atomic_save, make_generator, resolve_device
from ..design import plan
from ..design.study import model_training
from ..jobs.batching import resolve_batch_size, resolve_chunk_size
from ..jobs.points import run_pool
from .workmodel import DefenseCost, UnitCosts, split_sizes

__all__ = ["MAX_TRAIN_STEPS", "MIN_TRAIN_SPAN", "ProbeSettings", "cpu_seconds", "least_seconds", "one_thread",
           "probe_costs", "startup_seconds", "synthetic_data"]


@dataclass(frozen=True)
class ProbeSettings:
    """How long the probes run. train_steps: k, the steps a training step is timed over per model (more where
    they span less than MIN_TRAIN_SPAN CPU seconds); train_repeats: timings of each training run (the least
    counts); repeats: timings of each forward, attack and defense probe after a warm-up (the least
    counts); points: images per defense probe; executions: per point in the defense forward probes (timed
    at 2 and at this many)."""

    train_steps: int = 2
    train_repeats: int = 2
    repeats: int = 3
    points: int = 32
    executions: int = 8


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block (a job's unit of work), the caller's count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_seconds(work: Callable[[], Any]) -> float:
    """CPU seconds this process spends in `work()`."""
    start = time.process_time()
    work()
    return time.process_time() - start


def least_seconds(work: Callable[[], Any], repeats: int, *, warm_up: bool = True) -> float:
    """The least CPU seconds of `repeats` runs of `work()` (after one warm-up run: allocations, kernel
    selection): other work on the machine only ever adds time."""
    if warm_up:
        work()
    return min(cpu_seconds(work) for _ in range(repeats))


def synthetic_data(dataset: Mapping[str, Any], *, seed: int = 0) -> ImageDataset:
    """Random uint8 images and balanced labels of a data set config's sizes (its splits, classes, channels and
    image size): what the probes need when the data set is not prepared yet. ValueError for an image folder
    or archive, whose sizes only its prepared file knows."""
    sizes = split_sizes(dataset)
    if sizes is None:
        raise ValueError(f"the sizes of data set source {dataset['source']!r} are known only once it is prepared: "
                         "pass its file with --data (results/<run>/<dataset>/data.pt, the prepare_data rule's output)")
    n_train, n_test, classes, channels, size = sizes
    generator = make_generator(seed)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        splits[f"{split}_x"] = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)
        splits[f"{split}_y"] = torch.arange(n) % classes
    return ImageDataset(classes=[f"class{i}" for i in range(classes)], provenance={"source": "estimate: random images"},
                        **splits)


def startup_seconds(data_path: str | os.PathLike) -> float:
    """CPU seconds of one job's start-up: a fresh Python that imports torch, the library's job modules (and
    snakemake.script where installed: the Snakemake job's own preamble) and loads the data set file."""
    imports = ["import torch", "import mixup_inference.jobs.stages, mixup_inference.jobs.robust"]
    if importlib.util.find_spec("snakemake") is not None:
        imports.append("import snakemake.script")
    code = "; ".join([*imports, "from mixup_inference.core.data.datasets import load_dataset",
                      f"load_dataset({str(data_path)!r})"])
    package_root = os.path.dirname(os.path.dirname(mixup_inference.__file__))  # the library this process runs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _defense_settings(config: Mapping[str, Any], dataset: str) -> tuple[dict[str, str], dict[str, str]]:
    """defense -> a setting the run uses, for the forward probes (evaluations, Fig. 4, verdicts) and the
    forward+backward probes (the defenses the robustness evaluation attacks through) of `dataset`."""
    config = dict(config)
    forward: dict[str, str] = {}
    for (d, _regime, _attack), settings in plan.evaluation_groups(config).items():
        for defense, setting in settings:
            if d == dataset:
                forward.setdefault(defense, setting)
    for run in plan.adaptive_runs(config):
        if run.dataset == dataset:
            forward.setdefault(run.defense, run.setting)
    grad: dict[str, str] = {}
    runs = plan.robust_runs(config["robustness"]) if config.get("robustness") else []
    for d, _regime, defense, setting in plan.robust_targets(config):
        if d == dataset:
            forward.setdefault(defense, setting)
            grad.setdefault(defense, setting)
            for run in runs:
                extras = dict(run.extras)
                if "defense" in extras:
                    grad.setdefault(extras["defense"], extras["setting"])
    return forward, grad


#: CPU seconds the timed training steps should span at least (shorter: the probe times once more, enough steps).
MIN_TRAIN_SPAN = 0.25
#: Timed training steps at most, per model.
MAX_TRAIN_STEPS = 128


def _train_costs(config: Mapping[str, Any], dataset: str, data: ImageDataset,
                 settings: ProbeSettings) -> tuple[dict[str, float], dict[str, float]]:
    """model name -> CPU seconds of one training step, and of the rest of a train job's start (set-up,
    whitening fit). core.training.train runs one batch for 1 epoch, then for 1 + k epochs (the same
    set-up, k more steps); the difference / k is a step."""
    config = dict(config)
    device = torch.device("cpu")
    speed = resolve_speed(config.get("speed"), device, purpose="train")
    steps, setup = {}, {}
    for d, regime in plan.models_to_train(config):
        if d != dataset:
            continue
        training = model_training(config, regime)
        batch = int(training["batch_size"])
        if batch > len(data.train_y):
            raise ValueError(f"{regime}: batch_size {batch} is larger than the data set's {len(data.train_y)} "
                             "training images")

        def run(epochs: int) -> float:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = build_model(config["model"], data.num_classes, data.in_channels,
                                    init=training.get("init", "pytorch"))
            spec = TrainConfig(**{**training, "epochs": epochs,
                                  "milestones": tuple(training.get("milestones", (100, 150)))})
            return cpu_seconds(lambda: train(speed_model(model, speed), data.train_x[:batch], data.train_y[:batch],
                                             spec, device=device, progress=False))

        one, k = min(run(1) for _ in range(settings.train_repeats)), settings.train_steps
        span = min(run(1 + k) for _ in range(settings.train_repeats)) - one
        if span < MIN_TRAIN_SPAN and k < MAX_TRAIN_STEPS:  # short steps (a small model): time more of them
            k = min(MAX_TRAIN_STEPS, 4 * k if span <= 0 else math.ceil(1.2 * k * MIN_TRAIN_SPAN / span))
            span = min(run(1 + k) for _ in range(settings.train_repeats)) - one
        steps[regime] = max(span, 0.0) / k
        setup[regime] = max(one - steps[regime], 0.0)
    return steps, setup


def _defense_cost(run: Callable[[int], Any], takes_n: bool, points: int, executions: tuple[int, int],
                  repeats: int) -> DefenseCost:
    """A defense's cost per point from timings of `run(n)` on `points` points at two execution counts: the
    difference per execution, the rest per point (the plain forward, per-call work); a defense that takes
    no N (MI-Combined) at the higher count only."""
    low, high = executions
    if not takes_n:
        return DefenseCost(fixed=least_seconds(lambda: run(high), repeats) / points)
    t_low, t_high = least_seconds(lambda: run(low), repeats), least_seconds(lambda: run(high), repeats)
    per_execution = max(t_high - t_low, 0.0) / (points * (high - low))
    return DefenseCost(per_execution=per_execution, fixed=max(t_low / points - low * per_execution, 0.0))


def probe_costs(config: Mapping[str, Any], dataset: str, data: ImageDataset | None = None,
                data_path: str | os.PathLike | None = None,
                settings: ProbeSettings = ProbeSettings()) -> UnitCosts:
    """The unit costs of `dataset` of `config` on this machine's CPU, one thread. `data`: its prepared
    data set (`data_path`: the file, for the start-up probe); neither: random images of its sizes
    (:func:`synthetic_data`, written to a temporary file for the start-up probe)."""
    config = dict(config)
    if resolve_device(config["device"]).type != "cpu":
        raise ValueError(f"device: {config['device']} resolves to a GPU here; the estimate models CPU runs "
                         "(pass --set device=cpu)")
    spec = config["datasets"][dataset]
    if data is None:
        data = load_dataset(data_path) if data_path is not None else synthetic_data(spec, seed=int(config["seed"]))
    device = torch.device("cpu")
    with one_thread():
        with tempfile.TemporaryDirectory() as tmp:
            if data_path is None:  # the start-up loads a file of the data set's size
                data_path = os.path.join(tmp, "data.pt")
                atomic_save({"format": CACHE_FORMAT, "train_x": data.train_x, "train_y": data.train_y,
                             "test_x": data.test_x, "test_y": data.test_y, "classes": list(data.classes),
                             "provenance": dict(data.provenance)}, data_path)
            startup = startup_seconds(data_path)
        train_step, train_setup = _train_costs(config, dataset, data, settings)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            bare = build_model(config["model"], data.num_classes, data.in_channels).eval()
        model = speed_model(bare, resolve_speed(config.get("speed"), device, purpose="eval"))
        chunk = resolve_chunk_size(config["defenses"].get("chunk_size", "auto")) or default_chunk_size(device)
        x = to_float(data.test_x[: max(chunk, settings.points)])
        forward = (least_seconds(lambda: predict_probs(model, x[:chunk], chunk_size=chunk), settings.repeats)
                   / len(x[:chunk]))

        batch = resolve_batch_size(config["attacks"].get("batch_size", "auto"), device)
        adversarial = [name for name in config["attacks"]["names"] if parse_attack(name).steps > 0]
        craft = parse_attack(adversarial[0]).spec.craft if adversarial else parse_attack("pgd10").spec.craft
        xb, yb = to_float(data.test_x[:batch]), data.test_y[:batch]
        attack_steps = 4
        attack_step = least_seconds(lambda: craft(
            model, xb, yb, eps=config["attacks"]["eps"], step_size=config["attacks"]["step_size"], steps=attack_steps,
            targeted=False, generator=make_generator(0)), settings.repeats) / (len(xb) * attack_steps)

        pool = run_pool(data, int(spec["pool_per_class"]), int(config["seed"]), device)
        forward_settings, grad_settings = _defense_settings(config, dataset)
        points = x[: settings.points]  # the evaluation's forward probes
        defense = {"none": DefenseCost(fixed=forward)}  # the bare model: the forward probe's
        for name, setting in forward_settings.items():
            if name != "none":
                defense[name] = _defense_cost(lambda n: apply_defense(
                    model, points, name, setting, pool=pool, n_samples=n, chunk_size=chunk,
                    generator=make_generator(0)), DEFENSES[name].takes_n_samples, len(points),
                    (2, settings.executions), settings.repeats)
        attacked = x[: max(1, settings.points // 2)]  # a robust run's gradient: 32 copies at 2 executions inside
        defense_grad = {}
        for name, setting in grad_settings.items():

            def step(n: int) -> None:
                inputs = attacked.clone().requires_grad_(True)
                probs = apply_defense(model, inputs, name, setting, pool=pool, n_samples=n, chunk_size=chunk,
                                      generator=make_generator(0), grad=True)
                torch.autograd.grad(probs.clamp_min(1e-12).log().sum(), inputs)

            defense_grad[name] = _defense_cost(step, DEFENSES[name].takes_n_samples, len(attacked), (2, 4),
                                               settings.repeats)
    return UnitCosts(startup=startup, forward=forward, attack_step=attack_step, train_step=train_step,
                     train_setup=train_setup, defense=defense, defense_grad=defense_grad,
                     n_train=len(data.train_y), n_test_split=len(data.test_y))
