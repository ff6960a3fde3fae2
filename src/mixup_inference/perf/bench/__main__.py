"""``python -m mixup_inference.perf.bench``: see the package docstring."""

from .run import main

main()
