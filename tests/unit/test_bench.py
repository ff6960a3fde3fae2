"""Benchmark and fast paths: the quick benchmark writes complete reports whose ratios can be
recomputed from the stored timings; every fast path gives the plain path's answers.

No test here judges speed (the benchmark does); they check definitions and equal results."""

import json
import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mixup_inference.perf import bench
from mixup_inference.core.attacks.pgd import pgd
from mixup_inference.core.defenses.averaging import CHUNK_SIZE_CUDA, default_chunk_size, predict_probs
from mixup_inference.core.defenses.specs import DEFENSES
from mixup_inference.core.defenses.mi import mi_combined, mixup_inference
from mixup_inference.core.models.fastpath import DEVICE_DEFAULTS, FastModel, fast_model
from mixup_inference.core.models.networks import build_model
from mixup_inference.core.training.loop import train
from mixup_inference.core.training.config import TrainConfig
from mixup_inference.core.utils import make_generator


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py: one torch thread per module


# ---------------------------------------------------------------------------------------------
# The quick benchmark run


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = bench.main(["--quick", "--out", str(out)])
    return out, result


def expected_rows(config: dict) -> set[str]:
    pgd_rows = {f"{prefix}pgd{k}" for k in config["pgd_steps"] for prefix in ("", "t")}
    defenses = {name for name, spec in DEFENSES.items() if spec.randomized}  # every MI variant and every baseline
    return {*defenses, *pgd_rows, "adaptive_pgd",
            "eot_pgd", "robust_eot_pgd_mi_ol", "robust_eot_pgd_mi_ol_chunked", "robust_eot_pgd_gaussian",
            "robust_autoattack_gaussian", "robust_cascade_gaussian", "train_erm", "train_mixup", "train_at", "train_interpolated_at", "mi_ol_speedup_vs_loop"}


def test_quick_benchmark_writes_json_with_every_row_and_checkable_ratios(quick):
    out, returned = quick
    result = json.loads((out / "bench.json").read_text())
    assert result["command"] == f"python -m mixup_inference.perf.bench --quick --out {out}"
    rows = {row["name"]: row for row in result["rows"]}
    assert set(rows) == expected_rows(result["config"])
    assert {row["group"] for row in rows.values()} == set(bench.TARGETS)
    for row in rows.values():
        assert row["target"] == bench.TARGETS[row["group"]]
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0
        assert row["meets_target"] == (row["ratio"] >= row["target"])
        assert row["repeats"] == len(row.get("ratio_samples", row.get("samples"))) == result["config"]["repeats"]
        assert row["inputs"] >= 1 and row["throughput"] > 0
        if row["group"] == "speedup":
            for sample in row["samples"]:  # share = (t_loop / t_batched) / (t_batch1 / t_limit)
                assert sample["share"] == pytest.approx(
                    (sample["loop"] / sample["batched"]) / (sample["batch_one"] / sample["batched_limit"]))
            assert row["ratio"] == pytest.approx(statistics.median(s["share"] for s in row["samples"]))
        else:
            assert row["workload"] and row["limit"]
            ratios = [lim / work for lim, work in zip(row["limit_samples_s"], row["workload_samples_s"])]
            assert row["ratio"] == pytest.approx(statistics.median(ratios))
            assert row["t_workload_s"] == pytest.approx(statistics.median(row["workload_samples_s"]))
            if "ratio_strict" in row:  # the strict limit is a part of the limit
                assert all(0 < part <= lim for part, lim in zip(row["strict_samples_s"], row["limit_samples_s"]))
                assert row["ratio_strict"] <= max(ratios) + 1e-12
    assert result["all_targets_met"] == (all(r["meets_target"] for r in rows.values())
                                         and result["memory"]["meets_target"])
    assert returned["rows"] == result["rows"]
    env = result["environment"]
    assert env["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert env["torch_threads"] == 1 and "commit" in env["git"]


def test_quick_benchmark_covers_scaling_memory_and_fast_paths(quick):
    out, _ = quick
    result = json.loads((out / "bench.json").read_text())
    config = result["config"]
    assert [p["n_samples"] for p in result["scaling"]["n"]] == list(config["n_sweep"])
    assert [p["batch"] for p in result["scaling"]["batch"]] == list(config["batch_sweep"])
    assert [p["batch"] for p in result["chunk_sweep"]["points"]] == list(config["chunk_sweep"])
    assert result["chunk_sweep"]["library_chunk"] == default_chunk_size("cpu")
    memory = result["memory"]
    assert [p["n_samples"] for p in memory["probes"]] == [min(config["memory_ns"]), max(config["memory_ns"])]
    assert all(p["peak_increase_mib"] >= 0 for p in memory["probes"])
    assert memory["meets_target"] == (memory["growth"] < memory["target_growth"])
    names = [row["fast_path"] for row in result["fast_paths"]]
    assert names[:3] == ["channels_last", "autocast_bf16", "channels_last+autocast_bf16"]
    assert result["fast_paths"][0]["max_abs_prob_diff_mi_ol"] < 1e-5
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_benchmark_markdown_has_every_row(quick):
    out, result = quick
    text = (out / "bench.md").read_text()
    assert "| workload | ratio | strict | target | met | throughput |" in text
    for row in result["rows"]:
        line = next(line for line in text.splitlines() if line.startswith(f"| {bench.row_label(row['name'])} |"))
        assert f"| {row['ratio']:.3f} |" in line
    for heading in ("## Memory", "## Fast paths", "## MI-OL cost vs N and batch size", "## Machine"):
        assert heading in text


# ---------------------------------------------------------------------------------------------
# The authors' per-image loop computes MI-OL


class SoftmaxIsInput(nn.Module):
    """Images are probability vectors [B, C, 1, 1]; softmax(F(x)) == x (exactly linear)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x.flatten(1) + 1e-300)


def test_authors_loop_is_mi_ol_on_the_linear_toy_model():
    classes, lam = 5, 0.6
    pool_y = torch.arange(classes).repeat_interleave(3)
    pool_x = F.one_hot(pool_y, classes).double()[:, :, None, None]
    y = torch.tensor([0, 3, 4, 1])
    x = F.one_hot(y, classes).double()[:, :, None, None]
    probs = bench.authors_mi_ol_loop(SoftmaxIsInput(), x, pool_x, pool_y, lam=lam, n_samples=20,
                                     num_classes=classes, seed=3)
    assert torch.allclose(probs[torch.arange(4), y], torch.full((4,), lam, dtype=torch.float64))
    assert torch.allclose(probs.sum(1), torch.ones(4, dtype=torch.float64))
    library = mixup_inference(SoftmaxIsInput(), x, pool_x, pool_y, lam=lam, n_samples=20, mode="ol",
                              generator=make_generator(3))
    assert torch.allclose(library[torch.arange(4), y], probs[torch.arange(4), y])


# ---------------------------------------------------------------------------------------------
# Fast paths give the plain answers


def twins(name: str = "tiny_cnn", num_classes: int = 4, **switches) -> tuple[nn.Module, FastModel]:
    torch.manual_seed(0)
    plain = build_model(name, num_classes).eval()
    other = build_model(name, num_classes)
    other.load_state_dict(plain.state_dict())
    return plain, fast_model(other.eval(), **{"channels_last": False, "autocast": False, "compile": False,
                                              **switches})


def problem(num_classes: int = 4, size: int = 16):
    g = make_generator(1)
    x = torch.rand(6, 3, size, size, generator=g)
    pool_y = torch.arange(num_classes).repeat_interleave(3)
    pool_x = torch.rand(pool_y.shape[0], 3, size, size, generator=g)
    return x, pool_x, pool_y


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    leaf = x.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(leaf), y, reduction="sum"), leaf)[0]


@pytest.mark.parametrize("switches", [{"channels_last": True}, {"compile": "aot_eager"},
                                      {"channels_last": True, "compile": "aot_eager"}])
def test_exact_fast_paths_match_plain_evaluation_attack_and_training(switches):
    plain, fast = twins(**switches)
    x, pool_x, pool_y = problem()
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        assert torch.allclose(fast(x), plain(x), atol=1e-5)
    assert fast(x).dtype == torch.float32
    kw = dict(lam=0.5, n_samples=7, mode="ol")
    assert torch.allclose(mixup_inference(fast, x, pool_x, pool_y, generator=make_generator(2), **kw),
                          mixup_inference(plain, x, pool_x, pool_y, generator=make_generator(2), **kw), atol=1e-6)
    assert torch.allclose(mi_combined(fast, x, pool_x, pool_y, threshold=-1.0, generator=make_generator(2)),
                          mi_combined(plain, x, pool_x, pool_y, threshold=-1.0, generator=make_generator(2)), atol=1e-6)
    assert torch.allclose(input_gradient(fast, x, y), input_gradient(plain, x, y), atol=1e-5)
    adv_fast = pgd(fast, x, y, eps=8 / 255, step_size=2 / 255, steps=3, generator=make_generator(4))
    adv_plain = pgd(plain, x, y, eps=8 / 255, step_size=2 / 255, steps=3, generator=make_generator(4))
    assert (adv_fast - x).abs().max() <= 8 / 255 + 1e-6
    assert (adv_fast != adv_plain).float().mean() < 0.01  # a sign may flip on a near-zero gradient
    train_x = torch.randint(0, 256, (16, 3, 16, 16), generator=make_generator(5), dtype=torch.uint8)
    train_y = torch.randint(4, (16,), generator=make_generator(6))
    config = TrainConfig(regime="mixup", epochs=1, batch_size=8)
    hist_fast = train(fast, train_x, train_y, config, progress=False)
    hist_plain = train(plain, train_x, train_y, config, progress=False)
    assert hist_fast["final_loss"] == pytest.approx(hist_plain["final_loss"], rel=1e-5)
    for (key, a), (key_b, b) in zip(fast.state_dict().items(), plain.state_dict().items(), strict=True):
        assert key == key_b and torch.allclose(a, b, atol=1e-5), key


def test_autocast_bf16_is_close_and_returns_float32():
    plain, fast = twins("compact_resnet", autocast=True)
    x, pool_x, pool_y = problem(size=32)
    with torch.no_grad():
        logits = fast(x)
    assert logits.dtype == torch.float32
    kw = dict(lam=0.5, n_samples=5, mode="pl")
    probs_fast = mixup_inference(fast, x, pool_x, pool_y, generator=make_generator(2), **kw)
    probs_plain = mixup_inference(plain, x, pool_x, pool_y, generator=make_generator(2), **kw)
    assert probs_fast.dtype == torch.float32
    assert (probs_fast - probs_plain).abs().max() < 2e-2
    grad = input_gradient(fast, x, torch.zeros(6, dtype=torch.long))
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()


def test_fast_model_state_dict_is_the_plain_models():
    plain, fast = twins(channels_last=True)
    assert list(fast.state_dict()) == list(plain.state_dict())
    other = build_model("tiny_cnn", 4).eval()
    other.load_state_dict(fast.state_dict())
    x, _, _ = problem()
    with torch.no_grad():
        assert torch.allclose(other(x), plain(x), atol=1e-5)
    assert {id(p) for p in fast.parameters()} == {id(p) for p in fast.model.parameters()}


def test_fast_model_defaults_and_errors():
    torch.manual_seed(0)
    fast = fast_model(build_model("tiny_cnn", 3))
    assert fast.channels_last == DEVICE_DEFAULTS["cpu"]["channels_last"]
    assert fast.autocast_dtype is None and fast.compiled is None
    with pytest.raises(ValueError, match="already a FastModel"):
        fast_model(fast)
    with pytest.raises(ValueError, match="compile"):
        fast_model(build_model("tiny_cnn", 3), compile=3)


# ---------------------------------------------------------------------------------------------
# Evaluation under inference_mode, default chunk size


class Recorder(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.inner(x)


def test_evaluation_equals_no_grad_and_returns_ordinary_tensors():
    torch.manual_seed(0)
    model = build_model("tiny_cnn", 4).eval()
    x, _, _ = problem()
    with torch.no_grad():
        reference = F.softmax(model(x), dim=1)
    probs = predict_probs(model, x)
    assert torch.equal(probs, reference)
    assert not probs.is_inference()
    weight = torch.ones(4, requires_grad=True)
    (probs * weight).sum().backward()  # usable in autograd code
    assert torch.allclose(weight.grad, probs.sum(0))


def test_default_chunk_size_bounds_forward_batches_and_not_results():
    assert default_chunk_size("cpu") == 64 and default_chunk_size(torch.device("cuda")) == CHUNK_SIZE_CUDA
    torch.manual_seed(0)
    model = Recorder(build_model("tiny_cnn", 4).eval())
    x, pool_x, pool_y = problem()
    kw = dict(lam=0.5, n_samples=25, mode="ol")
    probs = mixup_inference(model, x, pool_x, pool_y, generator=make_generator(2), **kw)
    assert max(model.sizes) == 64 and sum(model.sizes) == 6 * 26
    again = mixup_inference(model, x, pool_x, pool_y, generator=make_generator(2), chunk_size=1000, **kw)
    assert torch.allclose(probs, again, atol=1e-6)
