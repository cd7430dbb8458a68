"""A worker process: receive parameters, compute exactly what the scheme assigns, send one frame.

Per parameter frame of step ``t`` (see :mod:`.transport` for the flow control):

1. load the parameters into the local model;
2. sample the step's batch from the seed (every rank draws the same files) and compute the
   gradients of *this worker's* files ``files_of[w]`` only, on its device (GPU when available;
   frames are always built on the CPU);
3. encode them with the scheme (:meth:`worker_message`: the file gradients for vote schemes, the
   cyclic code's linear combination for DRACO, the one gradient for dSTAR);
4. sleep the straggler model's delay for this worker (``time_scale`` real seconds per simulated
   second; Byzantine timing applied, so rushing Byzantine workers do not sleep);
5. send the frame.

**Byzantine workers** run the configured attack in their own process. The adversary model is the
simulator's: omniscient (it knows the data, the parameters, who the other Byzantine workers are
and, for defence-aware attacks, the server's rule and trusted data). A Byzantine process therefore
rebuilds the simulator's view of the step (:func:`byzantium.runtime.simulator.omniscient_view`: every file's honest
gradient, the simulated arrivals, the attack generator) and sends its row of
:meth:`byzantine_messages`; colluders agree because they evaluate the same deterministic
function. What each attack computes there: ALIE / IPM / MinMax / MinSum and the optimal variants
use the honest per-file (vote schemes), per-worker (plain, dSTAR) or encoded (DRACO cyclic)
vectors of the step; sign flip / reversed / label flip use the worker's own files; gaussian,
constant, zero, NaN/Inf use nothing. The cost is the full batch's gradients per Byzantine
process. No Byzantine side channel is opened: recomputation gives the same knowledge and cannot
stall the honest protocol (a deployment without shared data would need one; not implemented).

**Faults** (tests, demos): ``RuntimeOptions.faults`` makes a worker send short, wrongly declared,
stale- or forged-stamped, misattributed, NaN/Inf or huge frames, or SIGKILL / SIGSTOP itself. The
send path still cannot emit a frame longer than agreed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from ....config import RunConfig
from ....training.pergrad import per_file_gradients, set_flat_params
from ...job import build_job
from ...simulator import omniscient_view
from ..faults import FAULTS, faulty_frame, process_fault
from .geometry import geometry
from ..frames import PARAMS, STOP, validate_frame
from ..options import RuntimeOptions
from ..transport import WorkerChannel, init_world

__all__ = ["run_worker"]


def _device(opts: RuntimeOptions) -> torch.device:
    if opts.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(opts.device)


def run_worker(
    cfg: RunConfig,
    *,
    rank: int,
    world_size: int,
    session: int,
    opts: RuntimeOptions,
    log: Any = None,
) -> int:
    """Serve as worker ``rank - 1`` until the server sends STOP (exit code 0) or the connection to
    the server is lost (1)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if rank < 1:
        raise ValueError(f"run_worker: a worker's rank must be >= 1 (rank 0 is the server), got {rank}")
    groups = init_world(rank, world_size, connect_timeout=opts.connect_timeout,
                        gloo_timeout=opts.gloo_timeout)
    w = rank - 1
    job = build_job(cfg)
    dataset, model = job.dataset, job.model
    geo = geometry(job)
    scheme = job.scheme
    files = torch.tensor(scheme.assignment.files_of[w], dtype=torch.long)
    chan = WorkerChannel(groups[w], param_slots=geo.param_slots, message_slots=geo.message_slots)
    ever_byzantine = cfg.attack.placement == "redraw" or w in job.byzantine_workers_initial
    device = torch.device("cpu") if ever_byzantine else _device(opts)
    model.to(device)
    x_all, y_all = dataset.x_train, dataset.y_train
    faults = opts.faults_of(w)
    sleeps = cfg.stragglers.model != "none" and opts.time_scale > 0
    log(f"worker {w}: rank {rank}/{world_size}, files {scheme.assignment.files_of[w]}, "
        f"device {device}, byzantine {w in job.byzantine_workers_initial}")
    while True:
        try:
            buf = chan.recv()
        except Exception as e:  # noqa: BLE001 - the server is gone (finished, crashed, evicted us)
            log(f"worker {w}: lost the server: {str(e).splitlines()[0][:200]}")
            return 1
        frame = validate_frame(buf, session=session, kinds=(PARAMS, STOP), sender=0, step=None,
                               length=geo.param_slots)
        if frame.kind == STOP:
            log(f"worker {w}: stop after step {frame.step}")
            return 0
        step = frame.step
        fault = faults.get(step)
        process_fault(fault, f"worker {w}", step, log)
        model.train()
        set_flat_params(model, frame.payload)
        if bool(job.byzantine_mask(step)[w]):
            view = omniscient_view(job, model, step)[0]
            msg = scheme.byzantine_messages(view)[w]
            loss = float("nan")
        else:
            idx = job.batch_indices(step)[files]
            x, y = x_all[idx].to(device), y_all[idx].to(device)
            G, loss = per_file_gradients(model, job.loss_fn, x, y, return_loss=True)
            msg = scheme.worker_message(w, G)
        if sleeps:  # the delay model's latency comes on top of the real compute time
            delay = float(job.delays(step)[w]) * opts.time_scale
            if delay > 0:
                time.sleep(delay)
        out = faulty_frame(fault, msg, step=step, rank=rank, slots=geo.message_slots,
                           session=session, aux=loss)
        kind = FAULTS.get(fault) if fault else None
        if kind is not None and (kind.frame is not None or kind.truncate):
            log(f"worker {w}: fault injection: {fault} frame at step {step}")
        if kind is not None and kind.truncate:
            chan.send_truncated(out, out.numel() // 2)
        else:
            chan.send(out)
