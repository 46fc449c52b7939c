"""Progress bars (tqdm), counted in records; fractions of a record add up as a record's passes finish."""

from __future__ import annotations


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


def progress_bar(total: int, desc: str) -> RecordBar:
    """A bar of ``total`` records (see :class:`RecordBar`)."""
    return RecordBar(total, desc)
