"""The core layer: tensors in, tensors out.

Data sets and their sources, the model registry and model files, the four training regimes and
their options, the attacks (PGD, the paper's adaptive PGD, EOT PGD, and the attacks that run through
a defense, `defended`) with their specs (`attack_specs`), the defenses (Mixup Inference and the
baseline input transformations) with their specs (`defense_specs`), the
averaged-softmax engine they share, the MI sample pool, metrics with intervals, and the fast paths
that run a model in channels-last or bf16. Nothing here reads a config or writes a workflow
artifact; device and dtype come from the inputs, randomness from an explicit generator.

May import: only `core` and third-party packages.
"""

# The robustness evaluation's attack kinds register themselves (into attack_specs.ADAPTIVE_KINDS too)
# when their package loads: loading it with the layer makes every reader of a core module see them.
from . import attack_kinds  # noqa: F401
