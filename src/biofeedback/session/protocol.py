"""Session protocols: phases, techniques, scripted markers and the pre-session screening, as TOML data.

Protocol files live in the top-level ``protocols/`` (``default.toml``, ``home-relaxation.toml``);
``--protocol`` takes a path or the name of a file there. The format is documented in
``protocols/README.md``.
"""

from __future__ import annotations

import os
import pathlib
import tomllib
from dataclasses import dataclass, field

from biofeedback.errors import BiofeedbackError
from biofeedback.validate import MAX_DURATION_S, check_number, check_option, check_table, check_type, protocol_file

PROTOCOLS_ENV = "BIOFEEDBACK_PROTOCOLS"
DEFAULT_PROTOCOL = "default"
PHASE_KINDS = ("rest", "treatment", "task")
ACTIONS = ("hands-on", "hands-off", "technique", "note")
DEFAULT_TREATMENT_S = 600.0
"""Length of an open-ended treatment phase when the session runs unattended (``--auto``)."""
DEFAULT_INSTRUCTIONS = {
    "rest": "Client seated, shoulders relaxed, eyes open, no talking.",
    "treatment": "Treat the client; mark hands on and off and each technique as you go.",
    "task": "Client does the task as instructed; keep talking to a minimum.",
}
"""What the client does in a phase of each kind, when its protocol gives no ``instruction``."""


class SessionError(BiofeedbackError):
    """A session or calibration cannot start or go on; the message (one line) says what to do."""


@dataclass(frozen=True)
class Technique:
    key: str
    label: str


@dataclass(frozen=True)
class ScriptedMarker:
    """A marker an unattended session sets by itself, ``at_s`` session seconds after its phase starts."""

    at_s: float
    action: str
    technique: str | None = None
    text: str = ""


@dataclass(frozen=True)
class Phase:
    name: str
    kind: str
    duration_s: float | None
    """None: open-ended (ends on Enter; unattended sessions use ``DEFAULT_TREATMENT_S``)."""
    prompt: str = ""
    script: tuple[ScriptedMarker, ...] = ()
    instruction: str = ""
    """What the client does during the phase, in words for the session window (``DEFAULT_INSTRUCTIONS`` by kind when
    the protocol gives none); ``prompt`` is the terminal's line, which also names its keys."""

    def planned_s(self) -> float:
        return DEFAULT_TREATMENT_S if self.duration_s is None else self.duration_s


@dataclass(frozen=True)
class Question:
    """A screening question; ``stop_if`` is the answer (True = yes) that forbids starting, with ``reason``."""

    key: str
    text: str
    stop_if: bool
    reason: str


@dataclass(frozen=True)
class Protocol:
    name: str
    path: pathlib.Path
    phases: tuple[Phase, ...]
    techniques: tuple[Technique, ...]
    questions: tuple[Question, ...]
    raw: dict = field(repr=False, default_factory=dict)

    def technique(self, key: str) -> Technique:
        for t in self.techniques:
            if t.key == key:
                return t
        raise SessionError(f"{self.path.name}: scripted marker names technique {key!r}, which is not in its "
                           f"[[techniques]] ({', '.join(t.key for t in self.techniques)})")

    def timeline(self) -> list[tuple[Phase, float, float]]:
        """(phase, start s, end s) when every phase runs its planned length."""
        out, t = [], 0.0
        for p in self.phases:
            out.append((p, t, t + p.planned_s()))
            t += p.planned_s()
        return out


def default_protocols_dir() -> pathlib.Path:
    """``$BIOFEEDBACK_PROTOCOLS`` if set, else the repository's top-level ``protocols/``."""
    env = os.environ.get(PROTOCOLS_ENV)
    return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[3] / "protocols"


def resolve_toml(spec: str | os.PathLike | None, folder: pathlib.Path, default: str) -> pathlib.Path:
    """A path as given, or the ``<name>.toml`` of that name in ``folder``."""
    spec = default if spec is None else str(spec)
    path = pathlib.Path(spec)
    if not path.exists() and not spec.endswith(".toml") and os.sep not in spec:
        path = folder / f"{spec}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.toml"))) if folder.is_dir() else "none"
        raise SessionError(f"no protocol file {spec!r}; give a path to a .toml file or one of: {known}")
    return path


def read_toml(path: pathlib.Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionError(f"cannot read {path} ({exc})")
    except tomllib.TOMLDecodeError as exc:
        raise SessionError(f"{path} is not valid TOML ({exc}); fix the file")


def load_protocol(spec: str | os.PathLike | None = None) -> Protocol:
    """Load and check a session protocol TOML (a path, or a name in ``protocols/``)."""
    path = resolve_toml(spec, default_protocols_dir(), DEFAULT_PROTOCOL)
    return protocol_from_doc(read_toml(path), path)


def protocol_from_doc(doc: dict, path: pathlib.Path) -> Protocol:
    """Check a parsed protocol TOML ``doc`` (read from ``path``, or kept in a recording's meta) and build it.

    Every field is checked here, before any sensor connects: one ``SessionError`` line names the file and the field
    (``phases[1].duration_s``) and what it must hold; durations are finite and at most ``MAX_DURATION_S``."""
    at = protocol_file(path)
    check_table(doc, "the protocol", at)
    techniques = []
    for i, t in enumerate(check_type(doc.get("techniques", []), list, "techniques", at)):
        check_table(t, f"techniques[{i}]", at, ("key",))
        key = check_type(t["key"], str, f"techniques[{i}].key", at)
        techniques.append(Technique(key, check_type(t.get("label", key), str, f"techniques[{i}].label", at)))
    phases = []
    for i, p in enumerate(check_type(doc.get("phases", []), list, "phases", at)):
        where = f"phases[{i}]"
        check_table(p, where, at, ("name",))
        name = check_type(p["name"], str, f"{where}.name", at)
        kind = check_option(p.get("kind", "rest"), PHASE_KINDS, f"{where}.kind", at)
        duration = check_number(p.get("duration_s"), f"{where}.duration_s", at, lo=0, hi=MAX_DURATION_S,
                                unit="seconds", allow_none=kind == "treatment")
        script = []
        for j, m in enumerate(check_type(p.get("script", []), list, f"{where}.script", at)):
            check_table(m, f"{where}.script[{j}]", at, ("action", "at_s"))
            script.append(ScriptedMarker(
                check_number(m["at_s"], f"{where}.script[{j}].at_s", at, lo=0, hi=MAX_DURATION_S, unit="seconds"),
                check_option(m["action"], ACTIONS, f"{where}.script[{j}].action", at),
                None if m.get("technique") is None else check_type(m["technique"], str, f"{where}.script[{j}].technique", at),
                check_type(m.get("text", ""), str, f"{where}.script[{j}].text", at)))
        phases.append(Phase(name, kind, duration, check_type(p.get("prompt", ""), str, f"{where}.prompt", at),
                            tuple(sorted(script, key=lambda m: m.at_s)),
                            check_type(p.get("instruction", DEFAULT_INSTRUCTIONS[kind]), str, f"{where}.instruction", at)))
    if not phases:
        raise SessionError(f"{path.name}: no [[phases]]; a protocol needs at least one phase")
    questions = []
    for i, q in enumerate(check_type(doc.get("screening", []), list, "screening", at)):
        check_table(q, f"screening[{i}]", at, ("key", "text"))
        text = check_type(q["text"], str, f"screening[{i}].text", at)
        questions.append(Question(check_type(q["key"], str, f"screening[{i}].key", at), text,
                                  check_type(q.get("stop_if", True), bool, f"screening[{i}].stop_if", at),
                                  check_type(q.get("reason", text), str, f"screening[{i}].reason", at)))
    techniques, questions = tuple(techniques), tuple(questions)
    name = check_type(doc.get("name", path.stem), str, "name", at)
    proto = Protocol(name, path, tuple(phases), techniques, questions, doc)
    for ph in proto.phases:
        for m in ph.script:
            if m.action == "technique":
                proto.technique(m.technique or "")
    return proto
