"""README's library example runs as written."""

import contextlib
import io
import re

from workflow_helpers import REPO


def test_readme_library_example_runs(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    example = readme.split("## The library on its own model", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, "README.md", "exec"), {})
    accuracies = dict(re.findall(r"^(clean|PGD-10):\s+\{'accuracy': ([0-9.]+)", out.getvalue(), re.M))
    assert float(accuracies["clean"]) > 0.3  # 10 classes: trained well above chance
    assert float(accuracies["PGD-10"]) < float(accuracies["clean"])
    assert "PGD-10 + MI-OL" in out.getvalue()
    assert (tmp_path / "data" / "synthetic.pt").exists()
