"""The core layer: tensors in, tensors out, one package per domain.

- `data`: the data sets (`datasets`: preparation, loading, the evaluated test subset, tensor
  augmentation), image folders and archives (`imagefolder`) and the source names (`sources`);
- `models`: the architectures (`networks`), model files (`files`), the authors' checkpoints
  (`checkpoints`), checked downloads (`downloads`) and the fast paths (`fastpath`, chosen per job
  by `speed`);
- `defenses`: Mixup Inference (`mi`), the baseline input transformations (`baselines`), the
  averaged-softmax engine they share (`averaging`), the MI sample pool (`pool`), and one spec per
  defense (`specs`);
- `attacks`: PGD and the paper's adaptive PGD (`pgd`), the attacks that run through a whole defense
  (`defended`), one spec per attack (`specs`) and the robustness evaluation's attack kinds (`kinds`);
- `training`: the loop of the four regimes (`loop`), its options (`config`), its state (`state`)
  and the mixup of its inputs (`mixing`);
- shared by all: argument checks (`checks`), metrics with intervals (`metrics`), I/O, seeds and
  devices (`utils`).

Nothing here reads a config or writes a workflow artifact; device and dtype come from the inputs,
randomness from an explicit generator.

May import: only `core` and third-party packages. Inside `core`, a domain imports the shared
modules and the domains listed before it (data, models, defenses, attacks, training), never one after.
"""

# The robustness evaluation's attack kinds register themselves (into attacks.specs.ADAPTIVE_KINDS too)
# when their package loads: loading it with the layer makes every reader of a core module see them.
from .attacks import kinds  # noqa: F401
