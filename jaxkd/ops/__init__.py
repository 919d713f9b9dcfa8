"""Numerical kernels: convolutions tuned for XLA:CPU."""

from jaxkd.ops.cpu_conv import ConvGeometry, conv_general_dilated, plan_conv

__all__ = ["ConvGeometry", "conv_general_dilated", "plan_conv"]
