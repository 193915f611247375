"""Wording and layout helpers shared by every user-facing message and text table.

Counts in messages are often 1 (one subnet compiled alone, one violation, one epoch),
and "1 subnets" reads as a bug; names in tables are what a user compares rows by, so a
column is widened to its longest entry rather than cutting names that share a prefix
(``g1_resnetlike_a``, ``g1_resnetlike_b``) into identical stubs. The module imports
nothing heavy, so the CLI, the passes and the models can all use it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)

__all__ = ["about", "column_width", "plural"]


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """Return the count and its noun in the right number: ``"1 subnet"``, ``"2 subnets"``.

    Args:
        count: How many there are; only exactly 1 takes the singular ("0 subnets").
        singular: The noun (or noun phrase whose last word varies) for one.
        plural_form: The form for any other count, for nouns that do not just add an
            "s" (``plural(n, "weight matrix", "weight matrices")``).

    """
    if count == 1:
        return f"{count} {singular}"
    return f"{count} {plural_form if plural_form is not None else singular + 's'}"


def column_width(texts: Iterable[str], minimum: int) -> int:
    """Width of a left-aligned text column that shows every entry whole.

    Args:
        texts: Every entry of the column, its header included.
        minimum: The width the table was laid out for, kept when every entry is shorter
            so that tables of short names look as they always have.

    Returns:
        The larger of ``minimum`` and the longest entry plus one space, which keeps
        the entry apart from a right-aligned column after it.

    """
    return max([minimum, *(len(text) + 1 for text in texts)])


def about(seconds: float) -> str:
    """Say roughly how long something takes, as a person would: ``"about 7 min"``.

    An estimate extrapolated from a few steps is not worth more digits than this;
    under a minute it is given in seconds, under an hour in minutes, then in hours and
    minutes.
    """
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"
