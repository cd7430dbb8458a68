"""The one training loop: every runtime's steps run through :func:`train`.

A runtime supplies a :class:`Stepper`, which says how one step's update is produced (a simulated
cluster, a parameter server over the transport, replicated ByzSGD servers) and what its state is;
the loop owns everything else, written once:

* the step range, resume from the newest checkpoint (metrics cut back to it), ``max_steps``;
* wall-clock time per step and the accumulated message time (seconds a step's messages took:
  simulated in the simulator, real waiting in a real runtime; the ``sim_time`` column);
* evaluation every ``training.eval_every`` steps and at the last one;
* one metrics row per step (``metrics.csv``, appended as training goes);
* checkpoints every ``training.checkpoint_every`` steps and at the end of the call;
* progress (a bar, or lines for a real runtime's log);
* a step that cannot be completed (:class:`StopRun`): checkpoint of the last completed step, the
  summary with the error, then the error is raised again;
* divergence (:class:`Diverged`: the model, the loss or the aggregate became non-finite, or no
  input could be aggregated) is a *result*: the run stops there, and the summary says
  ``"status": "diverged"`` with ``diverged_at_step`` and the reason (the metrics rows keep the
  last finite values); nothing is raised, so a ``compare`` goes on with its other entries;
* ``summary.json`` and the plots, from the stepper's summary of the rows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from tqdm.auto import tqdm

from ..training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .rundir import check_resumable
from ..training.results import MetricsWriter, plot_accuracy, read_metrics, write_summary

__all__ = ["StopRun", "Diverged", "Stepper", "Clocks", "Progress", "BarProgress", "LineProgress",
           "RunCheckpoints", "train"]


class StopRun(RuntimeError):
    """A step cannot be completed (too few workers for the scheme's guarantee, no quorum...):
    the loop checkpoints the last completed step, writes the summary, then raises it again."""


class Diverged(Exception):
    """The run diverged at this step: a recorded result, not a crash (see the module docstring)."""


@dataclass
class Clocks:
    """Seconds accumulated over the run (restored on resume).

    ``message_time``: the seconds the steps' messages took: simulated seconds (the straggler
    model) in the simulator, the real seconds the server waited for them in a real runtime.
    ``metrics.csv``, checkpoints and summaries keep its historical name ``sim_time``."""

    message_time: float = 0.0
    wall_time: float = 0.0


class Stepper(Protocol):
    """How a runtime produces one step; the state the loop checkpoints."""

    def step(self, t: int) -> dict[str, Any]:
        """Run step ``t``; return its metrics row (``step`` may be larger than ``t`` when the
        runtime skipped ahead; ``message_seconds`` is added to :attr:`Clocks.message_time`, which
        the row records as ``sim_time``)."""
        ...

    def evaluate(self) -> dict[str, Any]:
        """Test metrics now (``test_loss``, ``test_accuracy``, ...), merged into the row."""
        ...

    def state_dict(self) -> dict[str, Any]:
        ...

    def load_state_dict(self, state: dict[str, Any]) -> int:
        """Restore a checkpoint; return the step to continue at."""
        ...

    def summary(self, rows: list[dict[str, Any]], clocks: Clocks, error: str | None) -> dict[str, Any]:
        ...


class RunCheckpoints:
    """``run_dir/checkpoints/step_NNNNNNN.pt``: the newest one is resumed."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        return save_checkpoint(self.run_dir, step, state)

    def newest(self) -> tuple[dict[str, Any], Path] | None:
        ck = latest_checkpoint(self.run_dir)
        return None if ck is None else (load_checkpoint(ck), ck)


class Progress(Protocol):
    def update(self, t: int, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class BarProgress:
    """A tqdm bar over the steps (the simulator)."""

    def __init__(self, label: str, steps: int, start: int, enabled: bool = True) -> None:
        self.bar = tqdm(total=steps, initial=start, desc=label, disable=not enabled,
                        dynamic_ncols=True, leave=False)

    def update(self, t: int, row: dict[str, Any]) -> None:
        self.bar.update(t + 1 - self.bar.n)
        if row.get("test_accuracy") is not None:
            self.bar.set_postfix(acc=f"{row['test_accuracy']:.3f}")

    def close(self) -> None:
        self.bar.close()


@dataclass
class LineProgress:
    """One line every ``every`` steps and at the last (a real runtime's log)."""

    say: Callable[[str], None]
    steps: int
    start: int
    every: int
    of: int
    t_run: float = field(default_factory=time.perf_counter)

    def update(self, t: int, row: dict[str, Any]) -> None:
        if self.every and ((t + 1) % self.every == 0 or t + 1 == self.steps):
            self.say(progress_line(t, self.steps, self.start, self.t_run, row.get("loss"),
                                   row.get("test_accuracy"), row.get("received"), self.of))

    def close(self) -> None:
        pass


def progress_line(step: int, steps: int, start: int, t_run: float, loss: float | None,
                  acc: float | None, received: int | None, of: int) -> str:
    """A progress line after ``step`` (0-based; ``start``: first step of this process, ``t_run``:
    its ``time.perf_counter()`` then)."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    rate = (step + 1 - start) / max(1e-9, time.perf_counter() - t_run)
    return (f"step {step + 1}/{steps}  loss {fmt(loss)}  acc {fmt(acc)}  received {received}/{of}  "
            f"{rate:.2f} steps/s")


def train(
    stepper: Stepper,
    *,
    run_dir: Path,
    steps: int,
    eval_every: int,
    checkpoint_every: int,
    metrics: MetricsWriter,
    resume: bool = False,
    max_steps: int | None = None,
    progress: Callable[[int], Progress] | None = None,
    checkpoints: Any = None,
    start: int | None = None,
    checkpoint_at_end: bool = True,
    checkpoint_on_stop: bool = True,
    before_step: Callable[[int], None] | None = None,
    plot: tuple[str, str] | None = None,
    on_stop: Callable[[int, str, Path | None], None] | None = None,
    summary_path: Path | None = None,
    clocks: Clocks | None = None,
    config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``stepper`` from its newest checkpoint (``resume``) or from ``start``/0 up to
    ``steps`` (at most ``max_steps`` of them in this call); return ``(summary, rows)``.

    ``checkpoints``: where state is saved and resumed (default :class:`RunCheckpoints` of
    ``run_dir``); ``start`` (with its ``clocks``): the step to begin at when the caller restored state itself;
    ``checkpoint_at_end``: also checkpoint the last step of this call; ``checkpoint_on_stop``:
    checkpoint the last completed step when a :class:`StopRun` ends the run; ``before_step(t)``: a hook
    (fault injection); ``plot``: ``(label, title)`` of ``accuracy.png``; ``on_stop(step, error,
    checkpoint)``: called when a :class:`StopRun` ends the run; ``config``: the run's resolved
    configuration (plain data), saved in every checkpoint and compared on resume: a checkpoint of
    another configuration is refused, naming the fields that differ.
    """
    run_dir = Path(run_dir)
    store = checkpoints if checkpoints is not None else RunCheckpoints(run_dir)
    clocks = clocks or Clocks()
    t = start or 0
    found = store.newest() if resume else None
    if found is not None:
        state, path = found
        check_resumable(state, path, config)
        t = stepper.load_state_dict(state)
        clocks = Clocks(float(state.get("sim_time", 0.0)), float(state.get("wall_time", 0.0)))
        metrics.truncate(t - 1)
    elif start:
        metrics.truncate(start - 1)
    else:
        metrics.reset()
    first = t
    stop = steps if max_steps is None else min(steps, first + max_steps)
    bar = progress(first) if progress is not None else None

    def save(step: int) -> Path:
        extra = {} if config is None else {"config": config}
        return store.save(step, {**stepper.state_dict(), "sim_time": clocks.message_time,
                                 "wall_time": clocks.wall_time, **extra})

    error: str | None = None
    diverged: tuple[int, str] | None = None
    try:
        while t < stop:
            if before_step is not None:
                before_step(t)
            t0 = time.perf_counter()
            row = stepper.step(t)
            t = int(row.get("step", t))
            clocks.wall_time += time.perf_counter() - t0
            row["step"] = t
            if "message_seconds" in row:
                clocks.message_time += float(row.pop("message_seconds") or 0.0)
                row["sim_time"] = clocks.message_time
            row["wall_time"] = clocks.wall_time
            if (t + 1) % eval_every == 0 or t + 1 == steps:
                row.update(stepper.evaluate())
                if row.get("test_loss") is not None and not math.isfinite(row["test_loss"]):
                    metrics.append(row)
                    raise Diverged(f"the test loss is {row['test_loss']} at step {t}")
            metrics.append(row)
            t += 1
            if checkpoint_every and t % checkpoint_every == 0 and t < steps:
                save(t)
            elif checkpoint_at_end and t == stop:
                save(t)
            if bar is not None:
                bar.update(t - 1, row)
    except Diverged as e:
        diverged = (t, str(e))
    except StopRun as e:
        error = str(e)
        path = save(t) if checkpoint_on_stop else None
        if on_stop is not None:
            on_stop(t, error, path)
    finally:
        if bar is not None:
            bar.close()
    rows = read_metrics(metrics.path)
    summary = stepper.summary(rows, clocks, error)
    summary["status"] = ("diverged" if diverged is not None else "stopped" if error is not None
                         else "completed" if summary.get("completed") else "partial")
    if diverged is not None:
        summary["completed"] = False
        summary["diverged"] = True
        summary["diverged_at_step"], summary["divergence"] = diverged
    if summary_path is None:
        write_summary(run_dir, summary)
    else:
        summary_path.write_text(json.dumps(summary, indent=2))
    if plot is not None:
        plot_accuracy(run_dir / "accuracy.png", [(plot[0], rows)], title=plot[1])
    if error is not None:
        raise StopRun(error)
    return summary, rows
