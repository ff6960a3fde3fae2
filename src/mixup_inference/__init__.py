"""Mixup Inference (Pang, Xu, Zhu, ICLR 2020) as a small, batched PyTorch library."""

__version__ = "0.1.0"
