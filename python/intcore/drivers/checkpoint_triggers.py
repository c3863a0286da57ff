"""When a training loop saves a checkpoint: every --checkpoint-every steps, every
--checkpoint-minutes of wall time (so a slow CPU never holds more than a few minutes of unsaved
work), and when the run is stopped. Ctrl-C (SIGINT) or a scheduler's SIGTERM asks the loop to
stop after the step in progress: it saves a checkpoint there, and the command ends as
interrupted, printing the command that continues it. A second Ctrl-C stops at once (the last
checkpoint is then the newest one saved).

A step is never cut in half: the signal only sets a flag, read between steps, so a checkpoint
always holds a model, optimizer and schedule that belong together. Under torchrun every rank
reads the flags of all ranks each step, so they save and stop at the same step.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

import torch

from intcore.drivers import distributed


class CheckpointTriggers:
    def __init__(self, world: distributed.World, device: torch.device, every_steps: int, every_minutes: float,
                 label: str):
        self.world, self.device, self.label = world, device, label
        self.every_steps, self.every_seconds = every_steps, every_minutes * 60
        self.stop_requested = False
        self._previous: dict = {}
        self._last_save = time.monotonic()

    def __enter__(self) -> "CheckpointTriggers":
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            self._previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self._last_save = time.monotonic()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for s, handler in self._previous.items():
            # None: a handler installed outside Python, which cannot be put back; the default is.
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if exc_type is not None:
            return
        # Asked to stop during the last step (its checkpoint is saved): stop, on every rank alike.
        stop = [float(self.stop_requested)]
        if self.world.distributed:
            stop = distributed.sum_across(self.world, stop, self.device)
        if stop[0] > 0:
            raise KeyboardInterrupt

    def _on_signal(self, signum, frame) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        if self.world.is_main:
            print(f"\n[{self.label}] stopping after this step and saving a checkpoint (again to stop at once)",
                  file=sys.stderr, flush=True)

    def after_step(self, step: int, boundary: bool) -> tuple[bool, bool]:
        """(save, stop) after `step`, the same on every rank. `boundary`: the loop must save here
        anyway (an epoch's or the run's end)."""
        flags = [float(self.stop_requested), float(time.monotonic() - self._last_save >= self.every_seconds)]
        if self.world.distributed:
            flags = distributed.sum_across(self.world, flags, self.device)
        stop = flags[0] > 0
        self.stop_requested = self.stop_requested or stop
        return boundary or stop or flags[1] > 0 or step % self.every_steps == 0, stop

    def saved(self) -> None:
        self._last_save = time.monotonic()
