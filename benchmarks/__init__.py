"""Benchmarks of jaxkd: the real train step against a PyTorch reference, and the input paths.

    python -m benchmarks.step --method kd --teacher resnet32x4 --student resnet8x4 --compare torch
    python -m benchmarks.input
    python -m benchmarks.parity --dtype float64 --steps 20   # numerics, not speed

`--write-results` regenerates this folder's RESULTS.md; nothing in it is typed by hand.
"""
