"""Window keys that work from the first second whatever widget has the focus.

A ``QShortcut`` loses to the focused widget: a spin box or a line edit accepts the ``ShortcutOverride`` of every
printable key, so with the dashboard's "EMG/ECG window" box focused at start, H and 1-7 changed the plot window
instead of marking the recording (issue 17). ``WindowKeys`` is an event filter on the window and each of its
widgets: it takes its keys before the focused widget sees them. The one exception is the text field the user is
typing in (the note): there, plain keys type text, and only keys with Ctrl/Alt, function keys and Escape act.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6 import QtCore, QtGui, QtWidgets

Key = QtCore.Qt.Key
Mod = QtCore.Qt.KeyboardModifier
COMMAND_MODIFIERS = Mod.ControlModifier | Mod.AltModifier | Mod.MetaModifier
"""A key with one of these is a command even while the user types text."""
FUNCTION_KEYS = range(Key.Key_F1.value, Key.Key_F35.value + 1)


def _combined(key: int, modifiers: QtCore.Qt.KeyboardModifier) -> int:
    """One number for a key and its modifiers, as ``QKeyCombination.toCombined`` (the keypad's digits are the digits).

    Plain integers: a key code Qt's ``Key`` enum does not list (a media key, a vendor key) must not raise."""
    return int(key) | (modifiers.value & ~Mod.KeypadModifier.value)


class WindowKeys(QtCore.QObject):
    """Runs ``actions[key sequence]`` on a key press anywhere in ``window`` (see the module docstring).

    ``typing``: the text field whose plain keys stay its own while it has the focus. Held keys do not repeat an action
    (a held H would toggle hands on and off)."""

    def __init__(self, window: QtWidgets.QWidget, actions: dict[str, Callable[[], None]],
                 typing: QtWidgets.QLineEdit | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.typing = typing
        self.actions: dict[int, Callable[[], None]] = {}
        for seq, fn in actions.items():
            combo = QtGui.QKeySequence(seq)[0]
            self.actions[_combined(combo.key().value, combo.keyboardModifiers())] = fn
        self.watch(window)

    def watch(self, widget: QtWidgets.QWidget) -> None:
        """Filter ``widget`` and every widget inside it (not scroll areas' viewports: keys go to the area itself)."""
        viewports = {area.viewport() for area in widget.findChildren(QtWidgets.QAbstractScrollArea)}
        for w in [widget, *widget.findChildren(QtWidgets.QWidget)]:
            if w not in viewports:
                w.installEventFilter(self)

    def _action(self, receiver: QtWidgets.QWidget, event: QtGui.QKeyEvent) -> Callable[[], None] | None:
        fn = self.actions.get(_combined(event.key(), event.modifiers()))
        if fn is None:
            return None
        typing = self.typing is not None and receiver is self.typing  # keys go to the focused widget
        command = (bool(event.modifiers() & COMMAND_MODIFIERS) or event.key() in FUNCTION_KEYS
                   or event.key() == Key.Key_Escape.value)
        return fn if command or not typing else None

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind not in (QtCore.QEvent.Type.ShortcutOverride, QtCore.QEvent.Type.KeyPress):
            return False
        if not isinstance(obj, QtWidgets.QWidget) or obj.window() is not self.window:
            return False
        fn = self._action(obj, event)
        if fn is None:
            return False
        if kind == QtCore.QEvent.Type.ShortcutOverride:
            event.accept()  # no shortcut elsewhere takes it: the key press comes to this filter
            return True
        if not event.isAutoRepeat():
            fn()
        return True
