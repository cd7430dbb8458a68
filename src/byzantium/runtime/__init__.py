"""Execution of a scheme: the job (parts built once from a config), the one training loop, the
simulated cluster, simulated ByzSGD, and the real multi-process runtime (``distributed/``)."""
