"""The benchmark's rows: every workload of the paper's grid (MI, baselines, PGD, adaptive
attacks, training epochs) against its limit, and the MI-OL speed-up over the per-image loop."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch import Tensor

from ...core.attacks.defended import autoattack_rand, eot_pgd_through_defense
from ...core.attacks.pgd import adaptive_pgd, eot_pgd, pgd
from ...core.defenses.averaging import predict_probs
from ...core.defenses.specs import DEFENSES, parse_setting
from ...core.defenses.mi import mi_given_labels, mi_combined, mixup_inference
from ...core.training.loop import train
from ...core.training.config import ADVERSARIAL_REGIMES, REGIMES, TrainConfig
from ...core.utils import make_generator
from .config import TARGETS
from .reference import authors_mi_ol_loop
from .harness import Setup, measure_row, random_images, random_labels
from .timing import forward_backward, forward_chunks, strict_part, timed, train_limit


def mi_rows(s: Setup) -> None:
    cfg, dev, model = s.cfg, s.device, s.model
    b, n, chunk = cfg.eval_batch, cfg.n_samples, s.chunk
    x = random_images(cfg, b, dev, 1)
    mixed = random_images(cfg, b * n, dev, 2)
    call = (f"mixup_inference(model, x, pool_x, pool_y, lam={cfg.lam}, n_samples={n}, mode=..., "
            f"chunk_size={cfg.chunk_size} (= {chunk}))")
    for mode in ("pl", "ol"):
        def workload(mode: str = mode) -> Tensor:
            return mixup_inference(model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode=mode,
                                   generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size)
        measure_row(s, name=f"mi_{mode}", group="mi", workload=workload,
             limit=lambda: (forward_chunks(model, x, chunk),
                            strict_part(lambda: forward_chunks(model, mixed, chunk), dev))[1],
             definition={"workload": call.replace("mode=...", f"mode='{mode}'"), "inputs": b,
                         "limit": f"fwd {b} + fwd {b}x{n} images in chunks of {chunk}"},
             units=b, unit="inputs/s", limit_images=b * (n + 1), strict_definition=f"fwd {b}x{n} images only")

    # MI-Combined with a threshold that flags about half of the inputs (both branches run).
    plain = predict_probs(model, x, chunk_size=cfg.chunk_size)
    probs_pl = mi_given_labels(model, x, plain.argmax(1), s.pool_x, s.pool_y, lam=0.5, n_samples=5,
                                             mode="pl", num_classes=plain.shape[1],
                                             generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size)
    drop = plain.max(1).values - probs_pl.max(1).values
    threshold = float(drop.median())
    flagged = int((drop >= threshold).sum())
    n_pl, n_ol = 5, 15
    mixed_pl, mixed_ol = random_images(cfg, b * n_pl, dev, 3), random_images(cfg, flagged * n_ol, dev, 4)

    def combined() -> Tensor:
        return mi_combined(model, x, s.pool_x, s.pool_y, threshold=threshold, generator=make_generator(cfg.seed),
                           chunk_size=cfg.chunk_size)

    def combined_limit() -> float:
        forward_chunks(model, x, chunk)
        return strict_part(lambda: (forward_chunks(model, mixed_pl, chunk), forward_chunks(model, mixed_ol, chunk)),
                           dev)

    measure_row(s, name="mi_combined", group="mi", workload=combined, limit=combined_limit,
         definition={"workload": f"mi_combined(model, x, pool_x, pool_y, lam_pl=0.5, lam_ol=0.4, n_pl=5, n_ol=15, "
                                 f"threshold={threshold:.4g} (median drop), chunk_size={cfg.chunk_size} (= {chunk}))",
                     "inputs": b, "flagged": flagged,
                     "limit": f"fwd {b} + fwd {b}x{n_pl} + fwd {flagged}x{n_ol} images in chunks of {chunk}"},
         units=b, unit="inputs/s", limit_images=b * (1 + n_pl) + flagged * n_ol,
         strict_definition=f"fwd {b}x{n_pl} + {flagged}x{n_ol} mixed images only")


def baseline_rows(s: Setup) -> None:
    cfg, dev, model = s.cfg, s.device, s.model
    b, n, chunk = cfg.baseline_batch, cfg.n_samples, s.chunk
    x = random_images(cfg, b, dev, 5)
    copies = random_images(cfg, b * n, dev, 6)
    baselines = {}
    for name, spec in DEFENSES.items():  # every baseline at its spec's example setting
        if spec.baseline:
            kwargs = parse_setting(name, spec.example)
            if spec.size_range:  # the examples' window sizes are for 32-pixel images
                kwargs = {k: v * cfg.image_size // 32 for k, v in kwargs.items()}
            baselines[name] = (spec.function, kwargs)
    for name, (fn, kwargs) in baselines.items():
        def workload(fn: Callable = fn, kwargs: dict = kwargs) -> Tensor:
            return fn(model, x, n_samples=n, generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size, **kwargs)
        args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        measure_row(s, name=name, group="baseline", workload=workload,
             limit=lambda: forward_chunks(model, copies, chunk),
             definition={"workload": f"{fn.__name__}(model, x, {args}, n_samples={n}, "
                                     f"chunk_size={cfg.chunk_size} (= {chunk}))",
                         "inputs": b, "limit": f"fwd {b}x{n} images in chunks of {chunk}"},
             units=b, unit="inputs/s", limit_images=b * n)


def pgd_rows(s: Setup) -> None:
    cfg, dev, model = s.cfg, s.device, s.model
    b = cfg.pgd_batch
    x, y = random_images(cfg, b, dev, 7), random_labels(cfg, b, dev, 8)
    for steps in cfg.pgd_steps:
        for targeted in (False, True):
            def workload(steps: int = steps, targeted: bool = targeted) -> Tensor:
                return pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=steps, targeted=targeted,
                           generator=make_generator(cfg.seed))

            def limit(steps: int = steps) -> None:
                model.eval()
                for _ in range(steps):
                    forward_backward(model, x, y)
            measure_row(s, name=f"{'t' if targeted else ''}pgd{steps}", group="pgd", workload=workload, limit=limit,
                 definition={"workload": f"pgd(model, x, y, eps=8/255, step_size=2/255, steps={steps}, "
                                         f"targeted={targeted})", "inputs": b,
                             "limit": f"{steps} x fwd+bwd over {b} images"},
                 units=b, unit="images/s", limit_images=b * steps)


def adaptive_rows(s: Setup) -> None:
    cfg, dev, model = s.cfg, s.device, s.model
    b, na, steps = cfg.adaptive_batch, cfg.n_adaptive, cfg.adaptive_steps
    x, y = random_images(cfg, b, dev, 9), random_labels(cfg, b, dev, 10)
    copies, y_copies = random_images(cfg, b * na, dev, 11), y.repeat_interleave(na)
    common = dict(lam=cfg.lam, mode="ol", n_adaptive=na, eps=8 / 255, step_size=2 / 255, steps=steps)

    def passes() -> None:
        model.eval()
        for _ in range(steps):
            forward_backward(model, copies, y_copies)

    def paper_limit() -> float:
        forward_chunks(model, x, b)
        return strict_part(passes, dev)

    def eot_limit() -> float:
        model.eval()
        strict = 0.0
        for _ in range(steps):
            forward_chunks(model, x, b)
            strict += strict_part(lambda: forward_backward(model, copies, y_copies), dev)
        return strict

    for name, fn, limit, text in (
            ("adaptive_pgd", adaptive_pgd, paper_limit, f"fwd {b} + {steps} x fwd+bwd over {b}x{na} copies"),
            ("eot_pgd", eot_pgd, eot_limit, f"{steps} x (fwd {b} + fwd+bwd over {b}x{na} copies)")):
        def workload(fn: Callable = fn) -> Tensor:
            return fn(model, x, y, s.pool_x, s.pool_y, generator=make_generator(cfg.seed), **common)
        measure_row(s, name=name, group="adaptive", workload=workload, limit=limit,
             definition={"workload": f"{fn.__name__}(model, x, y, pool_x, pool_y, lam={cfg.lam}, mode='ol', "
                                     f"n_adaptive={na}, eps=8/255, step_size=2/255, steps={steps})",
                         "inputs": b, "limit": text},
             units=b, unit="inputs/s", limit_images=b * na * steps,
             strict_definition=f"{steps} x fwd+bwd over {b}x{na} copies only")


def _model_passes(model: torch.nn.Module, fn: Callable[[], object]) -> list[tuple[int, bool]]:
    """(images, with autograd) of every forward call of `model` while `fn` runs."""
    calls: list[tuple[int, bool]] = []
    handle = model.register_forward_hook(lambda _m, args, _out: calls.append((args[0].shape[0],
                                                                                torch.is_grad_enabled())))
    try:
        fn()
    finally:
        handle.remove()
    return calls


def robust_rows(s: Setup) -> None:
    """The robustness evaluation's attacks (core.attacks.defended). EOT PGD: limit = steps x fwd+bwd over points x
    EOT draws x executions inside the defense, the passes it cannot avoid (MI's plain forward for its
    predicted label is not in it); through MI-OL once in one chunk and once in two checkpointed chunks
    (each chunk's forward recomputed in backward). AutoAttack rand: limit = the model passes its run
    makes (counted with a forward hook: APGD decides which points it attacks), fwd+bwd for the
    gradient passes (strict part) and fwd for its accuracy checks."""
    cfg, dev, model = s.cfg, s.device, s.model
    b, ns, eot, steps = cfg.robust_batch, cfg.robust_samples, cfg.robust_eot, cfg.robust_steps
    x, y = random_images(cfg, b, dev, 14), random_labels(cfg, b, dev, 15)
    copies = b * eot * ns
    images, labels = random_images(cfg, copies, dev, 16), random_labels(cfg, copies, dev, 17)
    pool = (s.pool_x, s.pool_y)

    def eot_limit() -> None:
        model.eval()
        for _ in range(steps):
            forward_backward(model, images, labels)
    cases = (("robust_eot_pgd_mi_ol", "mi_ol", f"lam={cfg.lam:g}", copies),
             ("robust_eot_pgd_mi_ol_chunked", "mi_ol", f"lam={cfg.lam:g}", max(1, copies // 2)),
             ("robust_eot_pgd_gaussian", "gaussian", "sigma=0.04", copies))
    for name, defense, setting, chunk in cases:
        def workload(defense: str = defense, setting: str = setting, chunk: int = chunk) -> Tensor:
            return eot_pgd_through_defense(model, x, y, defense, setting, pool=pool, n_samples=ns, eot=eot, eps=8 / 255,
                                   step_size=2 / 255, steps=steps, generator=make_generator(cfg.seed),
                                   chunk_size=chunk)
        measure_row(s, name=name, group="robust", workload=workload, limit=eot_limit,
             definition={"workload": f"eot_pgd_through_defense(model, x, y, '{defense}', '{setting}', n_samples={ns}, "
                                     f"eot={eot}, eps=8/255, step_size=2/255, steps={steps}, chunk_size={chunk})",
                         "inputs": b, "chunks_per_gradient": -(-copies // chunk),
                         "limit": f"{steps} x fwd+bwd over {b}x{eot}x{ns} copies"},
             units=b, unit="points/s", limit_images=copies * steps)

    # AutoAttack through Gaussian noise, labels = the bare model's predictions (so APGD attacks the points).
    aa_labels = predict_probs(model, x).argmax(1)

    def aa() -> Tensor:
        return autoattack_rand(model, x, aa_labels, "gaussian", "sigma=0.04", n_samples=ns, eps=8 / 255,
                               seed=cfg.seed, n_iter=steps, eot_iter=eot, generator=make_generator(cfg.seed))
    passes = _model_passes(model, aa)
    grad_images = sum(n for n, grad in passes if grad)
    check_images = sum(n for n, grad in passes if not grad)

    largest = max(n for n, _grad in passes)
    replay_x, replay_y = random_images(cfg, largest, dev, 18), random_labels(cfg, largest, dev, 19)

    def aa_limit() -> float:
        model.eval()
        for n, grad in passes:
            if not grad:
                forward_chunks(model, replay_x[:n], n)
        return strict_part(lambda: [forward_backward(model, replay_x[:n], replay_y[:n]) for n, grad in passes if grad],
                           dev)
    measure_row(s, name="robust_autoattack_gaussian", group="robust", workload=aa, limit=aa_limit,
         definition={"workload": f"autoattack_rand(model, x, y, 'gaussian', 'sigma=0.04', n_samples={ns}, "
                                 f"n_iter={steps}, eot_iter={eot}, n_restarts=1)", "inputs": b,
                     "limit": f"the run's model passes: fwd+bwd over {grad_images} images (gradients), "
                              f"fwd over {check_images} (accuracy checks)"},
         units=b, unit="points/s", limit_images=grad_images + check_images,
         strict_definition=f"fwd+bwd over {grad_images} images only")


def cascade_rows(s: Setup) -> None:
    """Issue 25: the robust job's cascade against the un-cascaded schedule, same points and defense.
    Workload = jobs.cascade.run_schedule with cascade=True over a two-level EOT PGD ladder (untargeted,
    targeted) through Gaussian noise with R = 2 verdict runs: each run attacks only the points every
    earlier run left; limit = the same schedule with cascade=False (every run on every point). ratio =
    t_uncascaded / t_cascade, the speed-up (it depends on how many points the early runs break: the
    definition records the points each mode attacked). Labels = the bare model's predictions, so every
    point starts robust."""
    from ...core.attacks.defended import repeated_verdicts
    from ...jobs.cascade import RunOutcome, run_schedule

    cfg, dev, model = s.cfg, s.device, s.model
    b, ns, eot, steps = cfg.robust_batch, cfg.robust_samples, cfg.robust_eot, cfg.robust_steps
    x = random_images(cfg, b, dev, 20)
    y = predict_probs(model, x).argmax(1)
    pool = (s.pool_x, s.pool_y)
    # the schedule reads a run's family, level and ladder (jobs.cascade.ScheduledRun)
    runs = [SimpleNamespace(family=f"{t}pgd", level=k, ladder=True, targeted=t == "t", steps=steps * 2 ** k,
                            eot=eot * 2 ** k, inner=ns * 2 ** k) for k in range(2) for t in ("", "t")]

    def attack(run: SimpleNamespace, idx: Tensor) -> Tensor:
        if not len(idx):
            return torch.zeros(0, dtype=torch.bool, device=dev)
        labels = (y[idx] + 1) % 10 if run.targeted else y[idx]
        x_adv = eot_pgd_through_defense(model, x[idx], labels, "gaussian", "sigma=0.04", pool=pool,
                                        n_samples=run.inner, eot=run.eot, eps=8 / 255, step_size=2 / 255,
                                        steps=run.steps, targeted=run.targeted,
                                        generator=make_generator(cfg.seed))
        verdicts = repeated_verdicts(model, x_adv, "gaussian", "sigma=0.04", repeats=2, n_samples=ns, pool=pool,
                                     generator=make_generator(cfg.seed))
        return (verdicts.argmax(2) == y[idx]).all(0)

    def schedule(cascade: bool) -> list[RunOutcome]:
        return run_schedule(runs, torch.ones(b, dtype=torch.bool, device=dev), attack, cascade=cascade,
                            tolerance=0.0)
    attacked = {mode: sum(r.attacked for r in schedule(mode)) for mode in (True, False)}
    measure_row(s, name="robust_cascade_gaussian", group="cascade", workload=lambda: schedule(True),
                limit=lambda: schedule(False),
                definition={"workload": f"run_schedule(cascade=True): EOT PGD ladder (steps {steps}, eot {eot}, "
                                        f"inner {ns}; one doubling; untargeted and targeted) through gaussian "
                                        f"sigma=0.04, R = 2 verdicts", "inputs": b,
                            "limit": "the same schedule with cascade=False (every run on every point)",
                            "points_attacked_cascade": attacked[True], "points_attacked_uncascaded": attacked[False]},
                units=b, unit="points/s", limit_images=attacked[False])


def training_rows(s: Setup) -> None:
    cfg, dev, model = s.cfg, s.device, s.train_model
    for regime in REGIMES:
        adversarial = regime in ADVERSARIAL_REGIMES
        n_batches = cfg.at_train_batches if adversarial else cfg.train_batches
        n_images = n_batches * cfg.train_batch
        g = make_generator(cfg.seed + 20)
        train_x = torch.randint(0, 256, (n_images, cfg.channels, cfg.image_size, cfg.image_size), generator=g,
                                dtype=torch.uint8)
        train_y = torch.randint(cfg.num_classes, (n_images,), generator=g)
        config = TrainConfig(regime=regime, epochs=1, batch_size=cfg.train_batch, at_steps=cfg.at_steps,
                             augment=True, seed=cfg.seed)
        batches = [(train_x[i:i + cfg.train_batch].to(dev).float() / 255, train_y[i:i + cfg.train_batch].to(dev))
                   for i in range(0, n_images, cfg.train_batch)]

        def workload(config: TrainConfig = config, train_x: Tensor = train_x, train_y: Tensor = train_y) -> dict:
            return train(model, train_x, train_y, config, device=dev, progress=False)
        passes = (f"{cfg.at_steps} x fwd+bwd over {cfg.train_batch} + train step over {2 * cfg.train_batch}"
                  if adversarial else f"train step over {cfg.train_batch}")
        measure_row(s, name=f"train_{regime}", group="training", workload=workload,
             limit=lambda config=config, batches=batches: train_limit(model, batches, config),
             definition={"workload": f"train(model, uint8 [{n_images}, ...], labels, TrainConfig(regime='{regime}', "
                                     f"epochs=1, batch_size={cfg.train_batch}, at_steps={cfg.at_steps}, "
                                     f"augment=True), progress=False)",
                         "inputs": n_images, "limit": f"{n_batches} x ({passes}), SGD as TrainConfig"},
             units=n_images, unit="images/s",
             limit_images=n_images * ((cfg.at_steps + 2) if adversarial else 1))
    model.eval()


def speedup_row(s: Setup) -> None:
    """Batched MI-OL vs the authors' per-image loop, as a share of the batching ceiling."""
    cfg, dev, model = s.cfg, s.device, s.model
    b, n, chunk = cfg.loop_batch, cfg.n_samples, s.chunk
    x = random_images(cfg, b, dev, 12)
    mixed = random_images(cfg, b * n, dev, 13)
    single = x[:1]

    def loop() -> Tensor:
        return authors_mi_ol_loop(model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n,
                                  num_classes=cfg.num_classes, seed=cfg.seed)

    def batched() -> Tensor:
        return mixup_inference(model, x, s.pool_x, s.pool_y, lam=cfg.lam, n_samples=n, mode="ol",
                               generator=make_generator(cfg.seed), chunk_size=cfg.chunk_size)

    def batch_one() -> None:  # as many batch-1 forwards as the loop makes (no_grad, like the loop)
        with torch.no_grad():
            for _ in range(b * (n + 1)):
                model(single)

    def batched_limit() -> None:
        forward_chunks(model, x, chunk)
        forward_chunks(model, mixed, chunk)

    started = time.perf_counter()
    for _ in range(cfg.warmup):
        loop(), batched(), batch_one(), batched_limit()
    samples = []
    for r in range(cfg.repeats):
        order = [loop, batched, batch_one, batched_limit]
        times = {fn.__name__: timed(fn, dev) for fn in (order if r % 2 == 0 else order[::-1])}
        speedup = times["loop"] / times["batched"]
        ceiling = times["batch_one"] / times["batched_limit"]
        samples.append({**times, "speedup": speedup, "ceiling": ceiling, "share": speedup / ceiling})
    med = {k: statistics.median(smp[k] for smp in samples) for k in samples[0]}
    row = {"name": "mi_ol_speedup_vs_loop", "group": "speedup", "target": TARGETS["speedup"],
           "workload": f"mixup_inference(..., mode='ol', n_samples={n}, chunk_size={cfg.chunk_size} (= {chunk})) "
                       f"on {b} inputs",
           "reference": f"authors_mi_ol_loop on the same {b} inputs ({b}x{n + 1} batch-1 forwards)",
           "ceiling_definition": f"t({b}x{n + 1} batch-1 forwards) / t(fwd {b} + fwd {b}x{n} in chunks of {chunk})",
           "definition": "ratio = median over repeats of (t_loop / t_batched) / ceiling",
           "inputs": b, "ratio": med["share"], "speedup": med["speedup"], "ceiling": med["ceiling"],
           "samples": samples, "repeats": cfg.repeats, "warmup": cfg.warmup,
           "throughput": b / med["batched"], "throughput_unit": "inputs/s",
           "loop_throughput": b / med["loop"], "limit_images": b * (n + 1),
           "limit_images_per_s": b * (n + 1) / med["batched_limit"],
           "batch1_images_per_s": b * (n + 1) / med["batch_one"]}
    row["meets_target"] = bool(row["ratio"] >= row["target"])
    row["seconds"] = time.perf_counter() - started
    s.rows.append(row)
    s.log(f"  {'mi_ol_speedup_vs_loop':<28} share {row['ratio']:.3f} (speed-up {row['speedup']:.2f}x, "
          f"ceiling {row['ceiling']:.2f}x; target {row['target']:.2f})  [{row['seconds']:.1f} s]")


# Every row section, in the order of the report.
ROW_SECTIONS = (mi_rows, baseline_rows, pgd_rows, adaptive_rows, robust_rows, cascade_rows, training_rows,
                speedup_row)
