"""Orbax checkpoints of a train state plus the data position, and a SIGTERM/SIGINT guard.

A checkpoint holds the train state (trainable params, optimizer state, step; restored with the shardings
the caller asks for) and a JSON `meta` dict: where the data stream stands (epoch, step within the epoch),
the accounting so far and the run's settings. Data order is a pure function of (seed, epoch), so restoring
the state and the position continues the same batches: a run killed and resumed ends with the same
parameters as an uninterrupted one. Saves are synchronous and atomic (Orbax writes to a temporary
directory and renames it), so a kill during a save leaves the previous checkpoint as the latest. A checkpoint
that does not restore all the same (a damaged disk, a copy cut short, files removed by hand) is skipped by
`restore_latest`, which falls back to the newest one that does and says which it skipped and why.
"""

from __future__ import annotations

import logging
import shutil
import signal
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """No checkpoint of a directory restores (the message lists each and why)."""


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

    def restore_latest(self, like: Any) -> tuple[int, Any, dict, list[tuple[int, str]]] | None:
        """(step, state, meta, skipped) of the newest checkpoint that restores, or None when there is none.

        Checkpoints that fail to restore are skipped — newest first — with a warning on this module's logger
        naming the step and the error; once an older one restores, the skipped (newer) ones are deleted, since
        the resumed run writes them again. `skipped` lists (step, reason). When none restores, a
        `CheckpointError` lists them all and nothing is deleted.
        """
        skipped: list[tuple[int, str]] = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state, meta = self.restore(step, like)
            except Exception as e:  # Orbax and tensorstore raise many kinds; each is reported, none hidden
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                log.warning("%s: checkpoint %d does not restore (%s); trying the previous one",
                            self.directory, step, reason)
                skipped.append((step, reason))
                continue
            for bad, _ in skipped:
                try:
                    self._manager.delete(bad)
                except Exception:  # a damaged directory Orbax cannot delete: remove the files
                    shutil.rmtree(self.directory / str(bad), ignore_errors=True)
                    self._manager.reload()
            if skipped:
                log.warning("%s: resuming from checkpoint %d; skipped and deleted %s", self.directory, step,
                            ", ".join(str(b) for b, _ in skipped))
            return step, state, meta, skipped
        if skipped:
            raise CheckpointError(f"{self.directory}: no checkpoint restores — "
                                  + "; ".join(f"step {b}: {why}" for b, why in skipped)
                                  + ". Delete the directory to start over")
        return None

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
