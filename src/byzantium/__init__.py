"""byzantium: Byzantine-resilient distributed training in PyTorch.

DRACO, DETOX, ByzShield, dSTAR and ByzSGD as compositions of small, replaceable parts:
assignments (who computes what), attacks, decoders, aggregators, and one step engine that runs in a
single process (simulation) or over torch.distributed.
"""

__version__ = "0.1.0"
