"""``python -m mixup_inference.bench``: see the package docstring."""

from .run import main

main()
