"""The held-out split's arithmetic, without numpy: how many rows a split keeps and holds out.

One function decides it for the library (``lelp.data.datasets.split_rows`` draws the rows) and
for the API's submit checks (``app.services.job_checks``, which must refuse a job the worker
would refuse), so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every held-out split (the test split when no eval file is given, the validation split always)
# holds out this share of its pool, and at least HOLD_OUT_MINIMUM rows, leaving as many to keep.
HOLD_OUT_FRACTION = 0.1
HOLD_OUT_MINIMUM = 20


@dataclass(frozen=True)
class SplitSizes:
    """A split of ``kept + held`` rows; ``from_labelled``: held-out rows are drawn from the labelled ones."""

    from_labelled: bool
    kept: int
    held: int


def split_sizes(rows: int, labelled: int, fraction: float = HOLD_OUT_FRACTION,
                minimum: int = HOLD_OUT_MINIMUM) -> SplitSizes | None:
    """The sizes of a split of ``rows`` rows of which ``labelled`` carry a label; None: too few rows.

    The held-out rows come from the labelled rows when there are enough of them to leave
    ``minimum`` on each side; otherwise (unlabelled transfer data) from all rows.
    """
    from_labelled = labelled >= 2 * minimum + int(round(labelled * fraction))
    pool = labelled if from_labelled else rows
    held = max(int(round(pool * fraction)), minimum)
    if pool - held < minimum:
        return None
    return SplitSizes(from_labelled, rows - held, held)
