"""Session protocols: phases, techniques, scripted markers and the pre-session screening, as TOML data.

Protocol files live in the top-level ``protocols/`` (``default.toml``, ``home-relaxation.toml``);
``--protocol`` takes a path or the name of a file there. The format is documented in
``protocols/README.md``.
"""

from __future__ import annotations

from biofeedback.errors import BiofeedbackError

import os
import pathlib
import tomllib
from dataclasses import dataclass, field

PROTOCOLS_ENV = "BIOFEEDBACK_PROTOCOLS"
DEFAULT_PROTOCOL = "default"
PHASE_KINDS = ("rest", "treatment", "task")
ACTIONS = ("hands-on", "hands-off", "technique", "note")
DEFAULT_TREATMENT_S = 600.0
"""Length of an open-ended treatment phase when the session runs unattended (``--auto``)."""


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


def _number(path: pathlib.Path, where: str, value, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SessionError(f"{path.name}: {where} must be a non-negative number of seconds, got {value!r}")
    return float(value)


def load_protocol(spec: str | os.PathLike | None = None) -> Protocol:
    """Load and check a session protocol TOML (a path, or a name in ``protocols/``)."""
    path = resolve_toml(spec, default_protocols_dir(), DEFAULT_PROTOCOL)
    return protocol_from_doc(read_toml(path), path)


def protocol_from_doc(doc: dict, path: pathlib.Path) -> Protocol:
    """Check a parsed protocol TOML ``doc`` (read from ``path``, or kept in a recording's meta) and build it."""
    techniques = tuple(Technique(str(t["key"]), str(t.get("label", t["key"]))) for t in doc.get("techniques", [])
                       if isinstance(t, dict) and "key" in t)
    phases = []
    for i, p in enumerate(doc.get("phases", [])):
        where = f"phases[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise SessionError(f"{path.name}: {where} needs a name")
        kind = p.get("kind", "rest")
        if kind not in PHASE_KINDS:
            raise SessionError(f"{path.name}: {where}.kind must be one of {', '.join(PHASE_KINDS)}, got {kind!r}")
        duration = _number(path, f"{where}.duration_s", p.get("duration_s"), allow_none=kind == "treatment")
        script = []
        for j, m in enumerate(p.get("script", [])):
            action = m.get("action")
            if action not in ACTIONS:
                raise SessionError(f"{path.name}: {where}.script[{j}].action must be one of {', '.join(ACTIONS)}")
            script.append(ScriptedMarker(_number(path, f"{where}.script[{j}].at_s", m.get("at_s")), action,
                                         m.get("technique"), str(m.get("text", ""))))
        phases.append(Phase(p["name"], kind, duration, str(p.get("prompt", "")),
                            tuple(sorted(script, key=lambda m: m.at_s))))
    if not phases:
        raise SessionError(f"{path.name}: no [[phases]]; a protocol needs at least one phase")
    questions = tuple(
        Question(str(q["key"]), str(q["text"]), bool(q.get("stop_if", True)), str(q.get("reason", q["text"])))
        for q in doc.get("screening", []) if isinstance(q, dict) and "key" in q and "text" in q
    )
    proto = Protocol(str(doc.get("name", path.stem)), path, tuple(phases), techniques, questions, doc)
    for ph in proto.phases:
        for m in ph.script:
            if m.action == "technique":
                proto.technique(m.technique or "")
    return proto
