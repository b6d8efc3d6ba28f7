"""Orbax checkpoints of a train state plus the data position, and a SIGTERM/SIGINT guard.

A checkpoint holds the train state (trainable params, optimizer state, step; restored with the shardings
the caller asks for) and a JSON `meta` dict: where the data stream stands (epoch, step within the epoch),
the accounting so far and the run's settings. Data order is a pure function of (seed, epoch), so restoring
the state and the position continues the same batches: a run killed and resumed ends with the same
parameters as an uninterrupted one. Saves are synchronous and atomic (Orbax writes to a temporary
directory and renames it), so a kill during a save leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """`save(step, state, meta)`, `latest()`, `restore(step, like)` over one directory (keeps `keep` newest)."""

    def __init__(self, directory: str | Path, *, keep: int = 2):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Save (replacing a checkpoint of the same step: an interrupt saved at an epoch's last step is
        saved again, with the advanced data position, when the resumed run closes that epoch)."""
        if int(step) in self._manager.all_steps():
            self._manager.delete(int(step))
        self._manager.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                              meta=ocp.args.JsonSave(meta)), force=True)
        self._manager.wait_until_finished()

    def latest(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, step: int, like: Any) -> tuple[Any, dict]:
        """(state, meta) of checkpoint `step`; `like` is a pytree of arrays or ShapeDtypeStructs whose
        shardings (when present) the restored arrays get."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = self._manager.restore(int(step), args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                         meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["meta"])

    def close(self) -> None:
        self._manager.close()


class StopRequested:
    """Context manager that turns SIGTERM/SIGINT into a flag the train loop polls between steps, so the
    loop can save a checkpoint and return. A second signal restores the default behaviour and re-raises
    (KeyboardInterrupt for SIGINT, termination for SIGTERM)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame):
        if self.signal is not None:  # second signal: give up on the graceful path
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        self.signal = signum

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()
        return False
