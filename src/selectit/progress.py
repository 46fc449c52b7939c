"""Progress, counted in records; fractions of a record add up as a record's passes finish. On a terminal a
tqdm bar; written to a file or a pipe, a plain line every ``LINE_EVERY`` of the work or ``LINE_SECONDS``
(a bar there would be hundreds of carriage-return updates on one line of a log)."""

from __future__ import annotations

import sys
import time

LINE_EVERY = 0.1  # a plain line at each tenth of the work ...
LINE_SECONDS = 60.0  # ... or after this long without one


class RecordBar:
    """A tqdm bar of ``total`` records. ``update`` takes fractions of a record (a record's passes are
    counted as they finish); the count never passes ``total`` (float sums can overshoot by a hair, which
    tqdm would report as "clamping frac" with a negative time left)."""

    def __init__(self, total: int, desc: str):
        from tqdm.auto import tqdm

        self.total, self.done = total, 0.0
        self.bar = tqdm(total=total, desc=desc, unit="rec", disable=False, bar_format=(
            "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"))

    def update(self, records: float) -> None:
        step = min(self.total - self.done, records)
        if step > 0:
            self.done += step
            self.bar.update(step)

    def close(self) -> None:
        self.bar.close()


class RecordLines:
    """The same counting as :class:`RecordBar`, written as plain lines to ``stream``: one at each
    ``LINE_EVERY`` of ``total`` passed or after ``LINE_SECONDS`` without one, and one at the end (unless
    the last already said it)."""

    def __init__(self, total: int, desc: str, stream=None, clock=time.monotonic):
        self.total, self.desc, self.done = total, desc, 0.0
        self.stream, self.clock = stream or sys.stderr, clock
        self.start = self.last = clock()
        self.next_share, self.closed, self.shown = LINE_EVERY, False, None

    def update(self, records: float) -> None:
        step = min(self.total - self.done, records)
        if step <= 0:
            return
        self.done += step
        now = self.clock()
        share = self.done / self.total if self.total else 1.0
        if share >= self.next_share or now - self.last >= LINE_SECONDS:
            self._line(now)
            while self.next_share <= share:
                self.next_share += LINE_EVERY

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.shown != self.done:  # the last line did not already say where it ended
                self._line(self.clock())

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        share = self.done / self.total if self.total else 1.0
        left = f", ~{elapsed / share - elapsed:.0f} s left" if 0 < share < 1 else ""
        rate = f", {self.done / elapsed:.1f} rec/s" if elapsed > 0 else ""
        print(f"{self.desc}: {self.done:.0f}/{self.total} records ({100 * share:.0f}%), {elapsed:.0f} s{rate}{left}",
              file=self.stream, flush=True)
        self.last, self.shown = now, self.done


def progress_bar(total: int, desc: str) -> RecordBar | RecordLines:
    """Progress over ``total`` records: a bar on a terminal (:class:`RecordBar`), plain lines elsewhere
    (:class:`RecordLines`)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return RecordBar(total, desc) if isatty is not None and isatty() else RecordLines(total, desc)
