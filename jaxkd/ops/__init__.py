"""Numerical kernels: convolutions tuned for XLA:CPU (`cpu_conv`), and XLA's convolution
computed once per replica under vmap (`replica_conv`)."""

from jaxkd.ops.cpu_conv import ConvGeometry, conv_general_dilated, plan_conv

__all__ = ["ConvGeometry", "conv_general_dilated", "plan_conv"]
