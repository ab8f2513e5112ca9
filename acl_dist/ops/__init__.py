"""Hot kernels with plain-PyTorch reference twins (``impl="ref"``)."""
