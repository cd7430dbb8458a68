"""ByzSGD in the distributed runtime: ``n_ps`` server ranks and ``n_w`` worker ranks on a mesh of
gloo pair channels (:mod:`..mesh`), no trusted component.

* :mod:`.layout`: rank layout, pairs, the deployment built from the config; :mod:`.inbox`: the quorum inbox;
* :mod:`.server`: a server rank (pull answers, MDA step, DMC gather; Byzantine behaviours);
* :mod:`.worker`: a worker rank (CwMed of the first models, gradient, push; sync filters);
* :mod:`.results`: merge the ranks' outputs into one run directory.

``byzantium launch`` starts these ranks when ``scheme.name`` is ``byzsgd``.
"""

from .inbox import QuorumError
from .layout import Layout, pairs
from .results import merge_run
from .server import run_byzsgd_server
from .worker import run_byzsgd_worker

__all__ = ["Layout", "QuorumError", "pairs", "merge_run", "run_byzsgd_server", "run_byzsgd_worker"]
