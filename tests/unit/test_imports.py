"""What `import mixup_inference` costs: the heavy analysis libraries load only where they are used.

Every workflow job imports the package; scipy.stats, scikit-learn, matplotlib and pandas took ~2.5 s
of each job's start-up before they were imported lazily (issue 14)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
HEAVY = ("scipy", "sklearn", "matplotlib", "pandas")


def _modules_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if name.split(".")[0] in HEAVY)


def test_package_import_loads_no_analysis_library():
    modules = _modules_after("import mixup_inference")
    assert "mixup_inference.core.metrics" in modules  # the check is not vacuous: metrics is imported
    assert _heavy(modules) == []


def test_job_modules_load_no_analysis_library():
    """What the train / attack / evaluate / adaptive job scripts import."""
    modules = _modules_after("import mixup_inference.jobs.stages, mixup_inference.jobs.joblog")
    assert _heavy(modules) == []


def test_auc_still_imports_its_dependencies_on_use():
    modules = _modules_after("import torch\nfrom mixup_inference.core.metrics import detection_auc\n"
                             "print(detection_auc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])), file=sys.stderr)")
    assert "sklearn.metrics" in modules
