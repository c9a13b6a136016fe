"""Text sizes of a window that is read from about 2 m away, from the size of the window.

At the smallest window we plan for (a maximised window on a 1366x768 laptop: about 1366x700 pixels inside the
frame) every text is at least ``MIN_TEXT_PX`` (16 px, plot ticks and legends included) and the big numbers are 40 px;
a larger window scales them all by its size against that one (by the tighter of width and height, in steps of 1/8, so
that a resize by a few pixels does not restyle the window), e.g. x1.375 in a 1920x1080 window.
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE_PX = (1366, 700)
"""Inside of a maximised window on a 1366x768 screen (taskbar and title bar taken off)."""
MIN_TEXT_PX = 16
SCALE_STEP = 0.125
MAX_SCALE = 3.0


@dataclass(frozen=True)
class Sizes:
    """Pixel sizes of a window's texts."""

    scale: float
    text_px: int
    """Buttons, captions, sensor panel, status line, plot ticks and legends."""
    title_px: int
    """Plot titles and the phase's instruction."""
    number_px: int
    """The big numbers."""
    timer_px: int
    """The phase name and its clock."""


def scale_for(width_px: int, height_px: int) -> float:
    """The window's scale against ``REFERENCE_PX``: at least 1, in steps of ``SCALE_STEP``."""
    ratio = min(width_px / REFERENCE_PX[0], height_px / REFERENCE_PX[1])
    return min(MAX_SCALE, max(1.0, SCALE_STEP * int(ratio / SCALE_STEP)))


def sizes_for(width_px: int, height_px: int) -> Sizes:
    s = scale_for(width_px, height_px)
    return Sizes(s, round(MIN_TEXT_PX * s), round(18 * s), round(40 * s), round(30 * s))
