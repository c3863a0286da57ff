"""The drivers' progress bar: its clock and rate count training steps only, and a log file that
captures it gets one line per step."""

import time

from intcore.drivers import distributed
from intcore.drivers.progress import Progress


def test_rate_leaves_out_paused_work_and_each_step_refreshes_once(capsys):
    bar = Progress(distributed.World(), enabled=True, total=4, initial=0, label="int8")
    for step in range(4):
        time.sleep(0.12)  # longer than tqdm's minimum refresh interval (0.1 s), as real steps are
        bar.step(loss=f"{1.0 / (step + 1):.3f}")
        with bar.paused():  # a validation pass, a checkpoint
            time.sleep(0.3)
    elapsed = bar._bar.format_dict["elapsed"]
    bar.close()
    assert elapsed < 0.48 + 0.25, f"the bar's clock ran through paused work ({elapsed:.2f} s for 4 x 0.12 s of steps)"
    refreshes = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.strip()]
    # The initial 0/4 line, one per step, and at most one more when the bar closes.
    assert 5 <= len(refreshes) <= 6, refreshes
    assert "loss=0.250" in refreshes[-1]


def test_only_the_main_rank_or_an_enabled_bar_prints(capsys):
    for world, enabled in ((distributed.World(rank=1, size=2), True), (distributed.World(), False)):
        bar = Progress(world, enabled=enabled, total=2, initial=0, label="fp32")
        bar.step(loss="1")
        with bar.paused():
            pass
        bar.close()
    assert capsys.readouterr().err == ""
