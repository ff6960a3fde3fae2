"""File safety (static and dynamic): nothing unpickles untrusted data, artifacts are written only
through temporary files, and a failed write keeps the old file."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest
import torch
from workflow_helpers import REPO

from mixup_inference.core.utils import atomic_open, atomic_save, atomic_write_text, load_checkpoint

# ================================================================ no unpickling, atomic writes (static)


def project_python_files() -> list[Path]:
    return sorted([*(REPO / "src").rglob("*.py"), *(REPO / "workflow").rglob("*.py")])


def calls(path: Path) -> list[tuple[str, ast.Call]]:
    """(dotted name of the called function, call node) for every call in a Python file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            out.append((ast.unparse(node.func), node))
    return out


#: yaml loaders that construct no Python object beyond plain scalars, lists and mappings.
SAFE_YAML_LOADERS = {"yaml.BaseLoader", "yaml.SafeLoader", "yaml.CSafeLoader", "yaml.CBaseLoader"}


def memory_buffers(path: Path) -> set[str]:
    """The names a file binds to an in-memory ``io.BytesIO()`` (torch.save into one writes no file)."""
    return {target.id for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) in ("io.BytesIO", "BytesIO")
            for target in node.targets if isinstance(target, ast.Name)}


def test_nothing_unpickles_untrusted_data():
    """Every torch.load passes weights_only=True; no pickle/np/pandas/yaml call that can run code."""
    unsafe = []
    for path in project_python_files():
        for name, node in calls(path):
            keywords = {k.arg: k.value for k in node.keywords}
            if name == "torch.load":
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    unsafe.append(f"{path}:{node.lineno} torch.load without weights_only=True")
            if re.fullmatch(r"(pickle|cPickle|dill|joblib|marshal|shelve)\.\w+|.*\.Unpickler|.*read_pickle", name) \
                    and not name.endswith(("dumps", "dump", "PicklingError", "UnpicklingError")):
                unsafe.append(f"{path}:{node.lineno} {name}")
            loader = keywords.get("Loader")
            safe_loader = loader is not None and ast.unparse(loader) in SAFE_YAML_LOADERS
            if name in ("yaml.unsafe_load", "yaml.full_load") or (name == "yaml.load" and not safe_loader):
                unsafe.append(f"{path}:{node.lineno} {name}")
            if name.endswith("np.load") or name == "numpy.load":
                flag = keywords.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    unsafe.append(f"{path}:{node.lineno} np.load(allow_pickle=...)")
    for path in [REPO / "Snakefile", REPO / "workflow" / "Snakefile", *(REPO / "workflow").rglob("*.smk")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"torch\.load|pickle\.|read_pickle|yaml\.load\(", line):
                unsafe.append(f"{path}:{number} {line.strip()}")
    assert unsafe == []


def atomic_handles(path: Path) -> set[str]:
    """The names a file binds with ``with atomic_open(...) as <name>``."""
    return {item.optional_vars.id for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
            if isinstance(node, ast.With) for item in node.items
            if isinstance(item.context_expr, ast.Call) and ast.unparse(item.context_expr.func).endswith("atomic_open")
            and isinstance(item.optional_vars, ast.Name)}


def test_artifacts_are_only_written_through_temporary_files():
    """torch.save only inside utils.atomic_save or into an in-memory buffer; DataFrame.to_csv only to a string;
    savefig only to a handle of utils.atomic_open; open(..., 'w') only for a job's log and a download's .part
    file."""
    direct = []
    for path in project_python_files():
        handles, buffers = atomic_handles(path), memory_buffers(path)
        for name, node in calls(path):
            where = f"{path.relative_to(REPO)} {ast.unparse(node)}"
            in_memory = len(node.args) > 1 and ast.unparse(node.args[1]) in buffers
            if name == "torch.save" and path.name != "utils.py" and not in_memory:
                direct.append(where)
            if name.endswith(".to_csv") and (node.args or any(k.arg == "path_or_buf" for k in node.keywords)):
                direct.append(where)
            if name.endswith(".savefig") and not (node.args and ast.unparse(node.args[0]) in handles):
                direct.append(where)
            if name == "open" and len(node.args) > 1 and re.search(r"[wax+]", ast.unparse(node.args[1])):
                direct.append(where)
    assert direct == ["src/mixup_inference/core/models/downloads.py open(part, 'wb')",  # <dest>.part, renamed once complete
                      "src/mixup_inference/jobs/joblog.py open(path, 'a', buffering=1)"]  # job_log's log file


def test_atomic_writes_keep_the_old_file_when_a_write_fails(tmp_path):
    path = tmp_path / "artifact.pt"
    atomic_save({"x": torch.arange(3)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a local lambda cannot be pickled: fails half-way
        atomic_save({"x": torch.arange(5), "f": lambda: 0}, path)
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))
    text = tmp_path / "results.csv"
    atomic_write_text(text, "a,b\n1,2\n")
    with pytest.raises(TypeError):
        atomic_write_text(text, None)
    with pytest.raises(RuntimeError), atomic_open(text) as handle:  # a figure or text that fails half-way
        handle.write(b"a,b\n3")
        raise RuntimeError("killed")
    assert text.read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact.pt", "results.csv"]  # no temporary left


def test_the_same_object_saved_twice_gives_the_same_bytes(tmp_path):
    """A re-run that computes the same model must write the same file (README "Determinism"): the
    temporary file's random name must not leak into the zip that torch.save writes."""
    obj = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "model_name": "m", "meta": {"seed": 0}}
    atomic_save(obj, tmp_path / "a" / "model.pt")
    atomic_save(obj, tmp_path / "b" / "model.pt")
    first, second = (tmp_path / "a" / "model.pt").read_bytes(), (tmp_path / "b" / "model.pt").read_bytes()
    assert first == second
    assert torch.equal(load_checkpoint(tmp_path / "a" / "model.pt")["state_dict"]["w"], obj["state_dict"]["w"])
