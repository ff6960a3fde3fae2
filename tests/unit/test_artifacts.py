"""The evaluation artifact (jobs/artifacts.py): fields, defaults, on-disk layout, validation, round trip."""

import pytest
import torch

from mixup_inference.jobs import artifacts
from mixup_inference.jobs.artifacts import ADAPTIVE_KINDS, Evaluation, EvaluationMeta, RobustBudget


def evaluation(**meta):
    probs = torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])
    y = torch.tensor([0, 1, 1])
    fields = {"dataset": "synth", "regime": "mixup", "attack": "pgd5", "defense": "mi_ol", "setting": "lam=0.5",
              "n_samples": 4, **meta}
    return Evaluation(probs, probs.flip(1), y, torch.full_like(y, -1), EvaluationMeta(**fields))


def test_defaults_and_the_on_disk_meta_of_each_job():
    meta = evaluation().meta
    assert (meta.adaptive, meta.n_adaptive, meta.labels, meta.robust) == ("none", 0, "prediction", None)
    # the evaluate and adaptive jobs' layout: no robust fields, dataset and regime last
    assert list(meta.to_dict()) == ["defense", "setting", "adaptive", "n_adaptive", "n_samples", "attack", "labels",
                                    "dataset", "regime"]
    robust = evaluation(adaptive="autoattack_rand",
                        robust=RobustBudget(n_samples_attack=2, eps=0.03, step_size=None, eot=4)).meta.to_dict()
    assert list(robust) == ["defense", "setting", "adaptive", "n_adaptive", "n_samples", "n_samples_attack", "attack",
                            "labels", "eps", "step_size", "n_restarts", "eot", "dataset", "regime"]
    assert (robust["step_size"], robust["n_restarts"], robust["eot"], robust["n_adaptive"]) == (None, 1, 4, 0)
    assert set(ADAPTIVE_KINDS) == {"none", "paper", "eot", "autoattack_rand", "eot_pgd", "tramer",
                                   "autoattack_standard", "pgd_bare"}


def test_a_robust_artifact_from_before_issue_33_loads_with_its_eot_draws_under_eot(tmp_path):
    """Its EOT draws were its meta's n_adaptive; load reads them as eot (n_adaptive is Fig. 4's N_A only)."""
    raw = evaluation(adaptive="eot_pgd", robust=RobustBudget(n_samples_attack=2, eps=0.03, step_size=0.01)).to_dict()
    del raw["meta"]["eot"]
    raw["meta"]["n_adaptive"] = 5
    torch.save(raw, tmp_path / "old.pt")
    meta = artifacts.load(tmp_path / "old.pt")["meta"]
    assert (meta["eot"], meta["n_adaptive"]) == (5, 0)
    fig4 = evaluation(adaptive="paper", n_adaptive=5).to_dict()  # not a robust run: unchanged
    torch.save(fig4, tmp_path / "fig4.pt")
    assert artifacts.load(tmp_path / "fig4.pt")["meta"] == fig4["meta"]


@pytest.mark.parametrize("meta", [{}, {"adaptive": "eot_pgd", "labels": "true",
                                       "robust": RobustBudget(n_samples_attack=2, eps=0.03, step_size=0.01, eot=2)}])
def test_save_load_round_trip(tmp_path, meta):
    original = evaluation(**meta)
    artifacts.save(original, tmp_path / "a.pt")
    raw = artifacts.load(tmp_path / "a.pt")
    assert list(raw) == ["probs", "plain_probs", "y", "target", "meta"]
    assert raw["meta"] == original.meta.to_dict()
    back = Evaluation.from_dict(raw)
    assert back.meta == original.meta
    for name in ("probs", "plain_probs", "y", "target"):
        assert torch.equal(getattr(back, name), getattr(original, name))


def test_unknown_kind_defense_or_labels_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="adaptive='pgd' is not one of"):
        evaluation(adaptive="pgd")
    with pytest.raises(ValueError, match="defense='mi_xx' is not one of"):
        evaluation(defense="mi_xx")
    with pytest.raises(ValueError, match="labels='truth' is not one of"):
        evaluation(labels="truth")
    raw = evaluation().to_dict()
    raw["meta"]["adaptive"] = "pgd"
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt: meta adaptive='pgd' is not one of"):
        artifacts.load(tmp_path / "bad.pt")


def test_missing_fields_and_bad_shapes_are_clear_errors():
    raw = evaluation().to_dict()
    with pytest.raises(ValueError, match=r"lacks \['plain_probs'\]"):
        artifacts.check({k: v for k, v in raw.items() if k != "plain_probs"}, "x.pt")
    with pytest.raises(ValueError, match=r"meta lacks \['regime'\]"):
        artifacts.check({**raw, "meta": {k: v for k, v in raw["meta"].items() if k != "regime"}})
    with pytest.raises(ValueError, match="must be a dict"):
        artifacts.check([raw])
    with pytest.raises(ValueError, match=r"must be \[n, C\], \[n, C\] and \[n\]"):
        artifacts.check({**raw, "y": raw["y"][:2]})
    with pytest.raises(TypeError):
        EvaluationMeta(dataset="synth", regime="mixup", attack="pgd5", defense="none")  # no setting
    # an artifact without target (old fixtures) reads as untargeted
    untargeted = Evaluation.from_dict({k: v for k, v in raw.items() if k != "target"})
    assert torch.equal(untargeted.target, torch.full((3,), -1))
