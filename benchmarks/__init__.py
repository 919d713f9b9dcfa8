"""Benchmarks of jaxkd: the real train step against a PyTorch reference, and the input paths.

    python -m benchmarks.step --method kd --teacher resnet32x4 --student resnet8x4 --compare torch
    python -m benchmarks.input

`--write-results` regenerates this folder's RESULTS.md; nothing in it is typed by hand.
"""
