"""Models from files: every format of core.models.files.MODEL_FORMATS gives a model of [0, 1] images with the
original's logits (and input gradients); run_import writes them as this project's model.pt; a file that
does not fit is refused in one line naming it."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from model_files import mine, save_export, save_torchscript
from reliability_helpers import job_error, prepared

from mixup_inference.jobs.stages import run_import
from mixup_inference.core.models.files import MODEL_FORMATS, detect_format, load_model, load_model_file, save_model
from mixup_inference.core.models.networks import build_model
from mixup_inference.core.utils import eval_mode

pytestmark = pytest.mark.usefixtures("single_thread")


SAVERS = {"torchscript": save_torchscript, "export": save_export}


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_programs_of_an_unknown_architecture_give_the_original_logits_and_gradients(tmp_path, fmt):
    original = mine()
    path = tmp_path / f"mine.{fmt}"
    SAVERS[fmt](original, path)
    assert detect_format(path) == fmt
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))  # another batch size than saved
    for given in (fmt, "auto"):
        model = load_model_file(path, given, num_classes=4)
        with eval_mode(model):  # toggling modes works, also on an exported GraphModule
            model.train()
            logits = model(x.clone().requires_grad_(True))
        torch.testing.assert_close(logits, original(x))
    grad_in = x.clone().requires_grad_(True)
    reference = x.clone().requires_grad_(True)
    torch.testing.assert_close(torch.autograd.grad(model(grad_in).sum(), grad_in)[0],
                               torch.autograd.grad(original(reference).sum(), reference)[0])


def test_state_dicts_of_a_registry_architecture_load_whole_or_as_the_net(tmp_path):
    torch.manual_seed(1)
    built = build_model("tiny_cnn", 4).eval()
    x = torch.rand(3, 3, 32, 32)
    for name, state in (("whole.pt", built.state_dict()), ("net.pt", built.net.state_dict()),
                        ("dp.pt", {f"module.{k}": v for k, v in built.state_dict().items()})):
        torch.save(state, tmp_path / name)
        assert detect_format(tmp_path / name) == "state_dict"
        model = load_model_file(tmp_path / name, "auto", num_classes=4, arch="tiny_cnn")
        torch.testing.assert_close(model(x), built(x))
    save_model(built, tmp_path / "project.pt", model_name="tiny_cnn", num_classes=4, in_channels=3)
    assert detect_format(tmp_path / "project.pt") == "project"
    torch.testing.assert_close(load_model_file(tmp_path / "project.pt", num_classes=4)(x), built(x))


@pytest.mark.parametrize("fmt", ["torchscript", "export", "state_dict"])
def test_run_import_writes_this_projects_model_file_with_the_sha256(tmp_path, fmt):
    data = prepared(tmp_path, "d4.pt", 4)
    source = tmp_path / f"source.{fmt}"
    if fmt == "state_dict":
        torch.manual_seed(0)
        original = build_model("tiny_cnn", 4).eval()
        torch.save(original.state_dict(), source)
    else:
        original = mine()
        SAVERS[fmt](original, source, size=16)  # the prepared data set's image size
    out = tmp_path / "out"
    metrics = run_import(str(data), str(source), out / "model.pt", out / "metrics.json", name="mine", format="auto",
                         arch="tiny_cnn" if fmt == "state_dict" else None, source="https://example.org/m", device="cpu")
    assert metrics["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert metrics["format"] == fmt and metrics["source"] == "https://example.org/m"
    assert json.loads((out / "metrics.json").read_text())["test"]["n"] > 0
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(load_model(out / "model.pt", num_classes=4)(x), original(x))


def test_files_that_do_not_fit_are_refused_in_one_line(tmp_path):
    data = prepared(tmp_path, "d4.pt", 4)
    out = tmp_path / "out"

    def refusal(source, fmt="auto", arch=None, sha256=None) -> str:
        return job_error(tmp_path / f"{source.name}.log", lambda: run_import(
            str(data), str(source), out / "model.pt", out / "metrics.json", name="mine", format=fmt, arch=arch,
            sha256=sha256, device="cpu"))

    wrong_classes = tmp_path / "ten.ts"
    save_torchscript(mine(num_classes=10), wrong_classes)
    assert refusal(wrong_classes) == (f"model file {wrong_classes} gives outputs of shape (2, 10) for 2 images, but "
                                      "the data set has 4 classes; give the model of this data set (logits [B, 4])")
    text = tmp_path / "page.html"
    text.write_text("<html>not found</html>")
    assert refusal(text).startswith(f"model file {text} is unreadable (not a PyTorch file)")
    state = tmp_path / "state.pt"
    torch.save(build_model("tiny_cnn", 4).state_dict(), state)
    assert refusal(state).startswith(f"model file {state} is a state_dict: its architecture must be named; set arch")
    assert refusal(state, arch="compact_resnet").startswith(
        f"model file {state} does not match architecture 'compact_resnet' with 4 classes: Missing key(s)")
    assert refusal(state, fmt="authors").startswith(f"checkpoint {state} does not match the authors' ResNet-50: "
                                                    "missing keys conv1.weight")
    assert refusal(state, fmt="torchscript").startswith(f"model file {state} is not a loadable torchscript model")
    assert refusal(state, arch="tiny_cnn", sha256="0" * 64).startswith(
        f"model file {state}: sha256 ")
    assert not out.exists()  # nothing written under the final names
    assert set(MODEL_FORMATS) == {"auto", "authors", "project", "state_dict", "torchscript", "export"}
