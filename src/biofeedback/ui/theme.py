"""Light and dark themes, sized to be read from the treatment table (about 2 m away)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Theme:
    name: str
    background: str
    panel: str
    text: str
    muted: str
    grid: str
    left: str
    """Left trapezius (EMG trace, tension, number)."""
    right: str
    ecg: str
    hr: str
    rr: str
    rmssd: str
    stress: str
    target: str
    warn: str
    ok: str
    button: str
    active: str
    """Background of the running phase's button and of 'hands on'."""


LIGHT = Theme("light", background="#ffffff", panel="#f1f3f5", text="#111111", muted="#555a60", grid="#c8ccd0",
              left="#0b5cad", right="#c44900", ecg="#7a1f7a", hr="#b00020", rr="#2e4a7d", rmssd="#00695c",
              stress="#8d5b00", target="#1b7f2a", warn="#b00020", ok="#1b7f2a", button="#e2e6ea", active="#ffd54f")
DARK = Theme("dark", background="#101317", panel="#1b2027", text="#f2f2f2", muted="#a9b1ba", grid="#3a424c",
             left="#5cb8ff", right="#ffa64d", ecg="#e59af0", hr="#ff6b7a", rr="#9fb7ff", rmssd="#4fd6c0",
             stress="#ffd166", target="#7ee081", warn="#ff6b7a", ok="#7ee081", button="#2a313a", active="#8a6d00")
THEMES = {t.name: t for t in (LIGHT, DARK)}

NUMBER_PT = 30
"""Point size of the big numbers (about 13 mm tall on a 24" full-HD screen)."""
LABEL_PT = 12
TIMER_PT = 26
AXIS_PT = 11


def stylesheet(theme: Theme) -> str:
    """Qt style sheet of the dashboard's widgets for ``theme``."""
    t = theme
    return f"""
    QWidget {{ background: {t.background}; color: {t.text}; font-size: {LABEL_PT}pt; }}
    QFrame#panel, QGroupBox {{ background: {t.panel}; border-radius: 6px; }}
    QGroupBox {{ margin-top: 1.4em; padding: 6px; font-weight: bold; }}
    QGroupBox::title {{ subcontrol-origin: margin; left: 8px; color: {t.muted}; }}
    QLabel {{ background: transparent; }}
    QLabel#caption {{ color: {t.muted}; font-size: {LABEL_PT - 1}pt; }}
    QLabel#number {{ font-size: {NUMBER_PT}pt; font-weight: bold; }}
    QLabel#timer {{ font-size: {TIMER_PT}pt; font-weight: bold; }}
    QLabel#phase {{ font-size: {TIMER_PT - 6}pt; font-weight: bold; }}
    QLabel#small {{ color: {t.muted}; font-size: {LABEL_PT - 2}pt; }}
    QLabel#replay {{ background: {t.active}; color: {t.text}; font-weight: bold; border-radius: 5px;
        padding: 4px 10px; }}
    QPushButton {{ background: {t.button}; border: 1px solid {t.grid}; border-radius: 5px; padding: 6px 10px; }}
    QPushButton:checked, QPushButton[active="true"] {{ background: {t.active}; font-weight: bold; }}
    QPushButton:disabled {{ color: {t.muted}; }}
    QLineEdit, QDoubleSpinBox, QComboBox, QListWidget {{ background: {t.panel}; border: 1px solid {t.grid};
        border-radius: 4px; padding: 3px; }}
    """
