"""The drivers' progress bar: training steps only, one refresh per step.

A tqdm bar on rank 0 whose count, elapsed time and rate are those of the training steps:
validation, checkpoints and the final test evaluation run with the bar's clock stopped, so the
rate it ends on is seconds per training step. Each step refreshes the bar once (the postfix is
set without a refresh of its own), so a log file that captures the bar gets one line per step.
"""

from __future__ import annotations

import contextlib

from intcore.drivers import distributed


class Progress:
    def __init__(self, world: distributed.World, enabled: bool, total: int, initial: int, label: str):
        self._bar, self._postfix = None, {}
        if world.is_main and enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=f"{label:>10}", unit="step", dynamic_ncols=True)

    def step(self, **postfix: str) -> None:
        """Counts one training step and shows postfix (e.g. loss=...) with it."""
        if self._bar is not None:
            self.show(**postfix)
            self._bar.update(1)

    def show(self, **values: str) -> None:
        """Values shown beside the bar from its next refresh on (e.g. the latest validation accuracy)."""
        if self._bar is not None:
            self._postfix.update(values)
            self._bar.set_postfix(self._postfix, refresh=False)

    @contextlib.contextmanager
    def paused(self):
        """Work inside the block (evaluation, checkpoints) is left out of the bar's time and rate."""
        try:
            yield
        finally:
            if self._bar is not None:
                self._bar.unpause()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
