"""The forkserver's own set-up, imported there as the last of :data:`.launcher.PRELOAD` (never by
a rank or by the launcher itself): first-use costs paid once for every rank, and a prompt exit.

* matplotlib's pyplot with the Agg backend (the server's plot; what ``training.results`` selects).
* Building the first model runs lazily imported torch submodules and meta-device initialisation
  (about 0.6 s); doing it here once on a 3-feature toy model spares every forked rank that cost.
  Tiny tensors only: no parallel region runs and no thread starts, so forking afterwards is safe.
* The forkserver exits when the launcher is gone; a normal interpreter exit with torch loaded
  takes about 0.7 s, during which it still holds the launcher's stdout and stderr (a pipe such as
  ``byzantium launch ... | tee log`` would stay open). It has nothing to flush or save, so it
  ends with ``os._exit`` at once. The hook is registered only when multiprocessing's forkserver
  ``main`` is what imports this module (elsewhere, e.g. a test importing it, it would hide the
  process's exit code); forked ranks inherit it but never run it (they end with ``os._exit``
  themselves), and it checks the PID.
"""

from __future__ import annotations

import atexit
import os
import sys
from multiprocessing import forkserver

import matplotlib
import torch

from ...training import datasets as data, models

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401

_toy = data.Dataset(name="warm-up", x_train=torch.zeros(4, 3), y_train=torch.zeros(4, dtype=torch.long),
                    x_test=torch.zeros(2, 3), y_test=torch.zeros(2, dtype=torch.long),
                    num_classes=2, input_shape=(3,))
_toy_model = models.build_model("mlp", _toy, seed=0, hidden=[2])
# the first torch optimizer imports torch._dynamo (~3.7 s): every server builds one (the star
# server's SGD, ByzSGD's learning-rate table)
torch.optim.SGD(_toy_model.parameters(), lr=0.1)
del _toy, _toy_model



def _imported_by_the_forkserver() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


if _imported_by_the_forkserver():
    _FORKSERVER_PID = os.getpid()

    @atexit.register
    def _exit_at_once() -> None:
        if os.getpid() == _FORKSERVER_PID:
            os._exit(0)
