"""Consent and contraindication check before a session, with a private audit log of every answer.

Every screening (passed or stopped) is appended as one JSON line to
``<home>/clients/<client_id>/screening.jsonl`` (0600): a stopped start creates no session file, so the
audit log is where its answers are kept. A session that starts also stores its answers in its meta
(``screening``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from biofeedback.session.protocol import Question, SessionError
from biofeedback.store.paths import FILE_MODE, data_home, private_dir, validate_client_id

AUDIT_FILE = "screening.jsonl"
ALL_CLEAR = "all-clear"
"""``--answers all-clear``: consent given and no contraindication, as confirmed by the therapist."""
_YES = {"y", "yes", "true", "1"}
_NO = {"n", "no", "false", "0"}


def parse_answer(text: str) -> bool | None:
    t = text.strip().lower()
    return True if t in _YES else False if t in _NO else None


def answers_from_text(spec: str, questions: tuple[Question, ...]) -> dict[str, bool]:
    """Answers from ``--answers``: ``all-clear`` or ``key=yes,key=no,...`` covering every question."""
    if spec.strip() == ALL_CLEAR:
        return {q.key: not q.stop_if for q in questions}
    answers: dict[str, bool] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        answer = parse_answer(value)
        if answer is None:
            raise SessionError(f"--answers: {part!r} should be key=yes or key=no")
        answers[key.strip()] = answer
    keys = [q.key for q in questions]
    unknown = sorted(set(answers) - set(keys))
    missing = [k for k in keys if k not in answers]
    if unknown or missing:
        raise SessionError(f"--answers must answer exactly {', '.join(keys)} (or be {ALL_CLEAR});"
                           + (f" unknown: {', '.join(unknown)};" if unknown else "")
                           + (f" missing: {', '.join(missing)}" if missing else ""))
    return answers


def ask(questions: tuple[Question, ...], read_line: Callable[[str], str]) -> dict[str, bool]:
    """Ask each question until it gets yes or no; stops asking at the first answer that stops the start."""
    answers: dict[str, bool] = {}
    for q in questions:
        while (answer := parse_answer(read_line(f"{q.text} [y/n] "))) is None:
            pass
        answers[q.key] = answer
        if answer == q.stop_if:
            break
    return answers


def stop_reasons(questions: tuple[Question, ...], answers: dict[str, bool]) -> list[str]:
    """Reasons not to start, one per contraindicating (or missing consent) answer."""
    return [q.reason for q in questions if answers.get(q.key) == q.stop_if]


def audit(client_id: str, protocol: str, answers: dict[str, bool], reasons: list[str], source: str) -> None:
    """Append one screening record to the client's private audit log."""
    folder = private_dir(private_dir(data_home() / "clients") / validate_client_id(client_id))
    record = {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "protocol": protocol, "answers": answers,
              "stopped": bool(reasons), "reasons": reasons, "source": source}
    fd = os.open(folder / AUDIT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def screen(client_id: str, protocol, answers_text: str | None, unattended: bool, activity: str = "session",
           ask_window: Callable[[tuple[Question, ...]], dict[str, bool] | None] | None = None) -> dict:
    """Take the screening answers (from ``--answers``, a window's ``ask_window``, or asked in the terminal), log
    them, and stop with the reasons if an answer contraindicates. Returns ``{"answers", "source"}`` for the recording.
    """
    if answers_text is not None:
        answers, source = answers_from_text(answers_text, protocol.questions), "command line (--answers)"
    elif ask_window is not None:
        answers, source = ask_window(protocol.questions), "window"
        if answers is None:
            raise SessionError(f"{activity} not started: the screening was cancelled (nothing recorded or logged)")
    elif unattended:
        raise SessionError(f"an unattended {activity} needs the screening answers: confirm consent and no "
                           f"contraindication with --answers {ALL_CLEAR}, or give key=yes|no for "
                           + ", ".join(q.key for q in protocol.questions))
    else:
        answers, source = ask(protocol.questions, input), "terminal"
    reasons = stop_reasons(protocol.questions, answers)
    audit(client_id, protocol.name, answers, reasons, source)
    if reasons:
        raise SessionError(f"{activity} not started: " + "; ".join(reasons) + " (answers kept in the client's screening log)")
    return {"answers": answers, "source": source}
