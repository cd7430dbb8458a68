"""First-use costs of a rank, paid once in the launcher's forkserver (imported there as the last
of :data:`.launcher.PRELOAD`; never imported by a rank or the launcher itself).

matplotlib's pyplot with the Agg backend (the server's plot; what ``training.results`` selects).
Building the first model runs lazily imported torch submodules and meta-device initialisation
(about 0.6 s); doing it here once on a 3-feature toy model spares every forked rank that cost.
Tiny tensors only: no parallel region runs and no thread starts, so forking afterwards is safe.
"""

from __future__ import annotations

import matplotlib
import torch

from ...training import data, models

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401

_toy = data.Dataset(name="warm-up", x_train=torch.zeros(4, 3), y_train=torch.zeros(4, dtype=torch.long),
                    x_test=torch.zeros(2, 3), y_test=torch.zeros(2, dtype=torch.long),
                    num_classes=2, input_shape=(3,))
models.build_model("mlp", _toy, seed=0, hidden=[2])
del _toy
