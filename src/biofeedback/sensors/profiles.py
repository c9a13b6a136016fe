"""Device profiles: the TOML files in the top-level ``devices/`` that describe each supported sensor.

A profile says how to recognise a sensor in a scan, which protocols it speaks, the GATT UUIDs of
each protocol, protocol settings and the streams it produces. ``devices/README.md`` documents
every field. Loading validates everything, so a broken profile fails at start-up with a message
naming the file and the field, never later in the middle of a session.
"""

from __future__ import annotations

import os
import pathlib
import tomllib
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from biofeedback.errors import BiofeedbackError
from biofeedback.sensors.protocols import PROTOCOLS
from biofeedback.stream import StreamKind

DEVICES_ENV = "BIOFEEDBACK_DEVICES"
"""Environment variable naming a directory of profiles to use instead of the repository's."""
DEFAULT_ATT_MTU = 23
MAX_ATT_MTU = 517
BLUETOOTH_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"

_REQUIRED = ("name", "label", "protocols", "match", "gatt", "streams")
_OPTIONAL = {"priority": 0, "min_mtu": DEFAULT_ATT_MTU, "settings": {}}
_MATCH_KEYS = ("name_prefixes", "services")
_STREAM_REQUIRED = ("kind", "unit", "channels", "rate_hz")
_STREAM_OPTIONAL = {"has_sequence": False, "device_time": False}


class ProfileError(BiofeedbackError, ValueError):
    """A device profile is broken or missing; the message names the file, the field and the fix."""

    def __init__(self, path: pathlib.Path | str, field: str | None, problem: str) -> None:
        self.path = pathlib.Path(path)
        self.field = field
        self.problem = problem
        where = f"{path}: field '{field}'" if field else f"{path}"
        super().__init__(f"{where}: {problem}")


def normalize_uuid(u: str) -> str:
    """A 16-bit ("180d", "0x180D"), 32-bit or 128-bit UUID as a lowercase 128-bit string."""
    if not isinstance(u, str):
        raise ValueError(f"{u!r} is not a UUID (use 4 hex digits or a 128-bit UUID)")
    text = u.strip().lower()
    short = text[2:] if text.startswith("0x") else text
    if len(short) in (4, 8) and all(c in "0123456789abcdef" for c in short):
        return f"{int(short, 16):08x}{BLUETOOTH_BASE_UUID_TAIL}"
    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        raise ValueError(f"{u!r} is not a UUID (use 4 hex digits or a 128-bit UUID)") from None


@dataclass(frozen=True)
class StreamSpec:
    """One stream a device produces."""

    kind: str
    """One of ``StreamKind``: "hr", "rr", "ecg", "emg", "status"."""
    unit: str
    channels: tuple[str, ...]
    rate_hz: float | None
    """Nominal sample rate; None for event streams."""
    has_sequence: bool
    """Packets carry a sequence counter or sample index."""
    device_time: bool
    """Packets carry a device timestamp."""


@dataclass(frozen=True)
class DeviceProfile:
    """A validated device profile."""

    name: str
    label: str
    path: pathlib.Path
    protocols: tuple[str, ...]
    priority: int
    min_mtu: int
    name_prefixes: tuple[str, ...]
    services: tuple[str, ...]
    """Normalized 128-bit UUIDs; any one advertised is enough."""
    gatt: dict[str, dict[str, str]] = field(hash=False)
    """Gatt table ("hrs", "pmd", "emg") -> role -> normalized UUID."""
    settings: dict[str, object] = field(hash=False)
    streams: tuple[StreamSpec, ...]

    def matches(self, name: str | None, service_uuids: Iterable[str]) -> bool:
        """Whether an advertisement (local name, service UUIDs short or full) fits this profile."""
        if self.name_prefixes and not (name and name.startswith(self.name_prefixes)):
            return False
        if not self.services:
            return True
        advertised = set()
        for u in service_uuids:
            try:
                advertised.add(normalize_uuid(u))
            except ValueError:
                continue
        return any(s in advertised for s in self.services)

    def uuid(self, protocol: str, role: str) -> str:
        """The UUID of a role ("service", "control", ...) of a protocol ("polar-pmd" or its table "pmd")."""
        table_name = PROTOCOLS[protocol].gatt_table if protocol in PROTOCOLS else protocol
        table = self.gatt.get(table_name)
        if table is None or role not in table:
            raise ProfileError(self.path, f"gatt.{table_name}.{role}", "not in this profile")
        return table[role]

    def stream(self, kind: str) -> StreamSpec:
        """The spec of the stream of this kind."""
        for s in self.streams:
            if s.kind == kind:
                return s
        raise ProfileError(self.path, "streams", f"no stream of kind {kind!r} in this profile")


def default_devices_dir() -> pathlib.Path:
    """``$BIOFEEDBACK_DEVICES`` if set, else the repository's top-level ``devices/``."""
    env = os.environ.get(DEVICES_ENV)
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parents[3] / "devices"


class _Checker:
    """Type checks that raise ProfileError naming the file and the field."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def fail(self, where: str | None, problem: str) -> ProfileError:
        return ProfileError(self.path, where, problem)

    def table(self, value: object, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a table ([{where}]), got {_describe(value)}")
        return value

    def keys(self, table: dict, where: str | None, required: Iterable[str], optional: Iterable[str]) -> None:
        prefix = f"{where}." if where else ""
        required = tuple(required)
        for key in required:
            if key not in table:
                raise self.fail(f"{prefix}{key}", "missing (add it; see devices/README.md)")
        allowed = set(required) | set(optional)
        for key in table:
            if key not in allowed:
                raise self.fail(
                    f"{prefix}{key}", f"unknown field (allowed here: {', '.join(sorted(allowed))})"
                )

    def string(self, value: object, where: str, *, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {_describe(value)}")
        if not empty_ok and not value.strip():
            raise self.fail(where, "must not be empty")
        return value

    def strings(self, value: object, where: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(where, f'expected a list of strings like ["a", "b"], got {_describe(value)}')
        return tuple(self.string(v, f"{where}[{i}]") for i, v in enumerate(value))

    def integer(self, value: object, where: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer, got {_describe(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(where, f"{value} is out of range ({lo}-{hi})")
        return value

    def number(self, value: object, where: str, *, positive: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"expected a number, got {_describe(value)}")
        if value < 0 or (positive and value == 0):
            raise self.fail(where, f"{value} must be {'positive' if positive else 'zero or positive'}")
        return float(value)

    def boolean(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"expected true or false, got {_describe(value)}")
        return value

    def uuid(self, value: object, where: str) -> str:
        text = self.string(value, where)
        try:
            return normalize_uuid(text)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None


def _describe(value: object) -> str:
    names = {
        dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an integer", float: "a float"
    }
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


def _read_toml(path: pathlib.Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, None, f"not valid TOML: {exc} (fix the syntax there)") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(path, None, f"not UTF-8 text ({exc}); save the file as UTF-8") from None
    except OSError as exc:
        raise ProfileError(path, None, f"cannot read the file: {exc.strerror or exc}") from None


def _check_settings(c: _Checker, settings: dict, protocols: tuple[str, ...]) -> dict[str, object]:
    for protocol in protocols:
        for key, kind in PROTOCOLS[protocol].settings.items():
            where = f"settings.{key}"
            if key not in settings:
                raise c.fail(where, f"missing; protocol {protocol!r} needs it (see devices/README.md)")
            value = settings[key]
            if kind == "u8":
                c.integer(value, where, 1, 0xFF)
            elif kind == "u16":
                c.integer(value, where, 1, 0xFFFF)
            elif kind == "seconds":
                c.number(value, where, positive=True)
            elif kind == "range":
                if not isinstance(value, list) or len(value) != 2:
                    raise c.fail(where, f"expected [low, high], got {_describe(value)}")
                low, high = (c.number(v, f"{where}[{i}]", positive=True) for i, v in enumerate(value))
                if low > high:
                    raise c.fail(where, f"low {low} is above high {high}")
    for spec in (PROTOCOLS[p] for p in protocols):
        if spec.rate_range_setting and spec.rate_setting:
            _, rate_key = spec.rate_setting
            low, high = settings[spec.rate_range_setting]
            if not low <= settings[rate_key] <= high:
                raise c.fail(f"settings.{spec.rate_range_setting}", f"[{low}, {high}] must contain {rate_key}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def _check_stream(c: _Checker, raw: object, i: int) -> StreamSpec:
    where = f"streams[{i}]"
    table = c.table(raw, where)
    c.keys(table, where, _STREAM_REQUIRED, _STREAM_OPTIONAL)
    kind = c.string(table["kind"], f"{where}.kind")
    if kind not in StreamKind.UNITS:
        known = ", ".join(StreamKind.UNITS)
        raise c.fail(f"{where}.kind", f"{kind!r} is not a stream kind (use one of {known})")
    unit = c.string(table["unit"], f"{where}.unit", empty_ok=True)
    if unit != StreamKind.UNITS[kind]:
        raise c.fail(
            f"{where}.unit", f"{unit!r}: {kind} blocks carry {StreamKind.UNITS[kind]!r} (use that)"
        )
    channels = c.strings(table["channels"], f"{where}.channels")
    if not channels or len(set(channels)) != len(channels):
        raise c.fail(f"{where}.channels", "must list one or more distinct channel names")
    rate = c.number(table["rate_hz"], f"{where}.rate_hz", positive=False)
    return StreamSpec(
        kind=kind,
        unit=unit,
        channels=channels,
        rate_hz=rate or None,
        has_sequence=c.boolean(table.get("has_sequence", False), f"{where}.has_sequence"),
        device_time=c.boolean(table.get("device_time", False), f"{where}.device_time"),
    )


def _check_gatt(c: _Checker, gatt_doc: dict, protocols: tuple[str, ...]) -> dict[str, dict[str, str]]:
    tables = {PROTOCOLS[p].gatt_table: p for p in protocols}
    for table_name, protocol in tables.items():
        if table_name not in gatt_doc:
            raise c.fail(
                f"gatt.{table_name}", f"missing; protocol {protocol!r} needs a [gatt.{table_name}] table"
            )
    gatt: dict[str, dict[str, str]] = {}
    for table_name, roles in gatt_doc.items():
        where = f"gatt.{table_name}"
        if table_name not in tables:
            expected = ", ".join(sorted(tables))
            raise c.fail(where, f"no protocol in 'protocols' uses it (tables for its protocols: {expected})")
        roles = c.table(roles, where)
        for role in PROTOCOLS[tables[table_name]].roles:
            if role not in roles:
                raise c.fail(f"{where}.{role}", f"missing; protocol {tables[table_name]!r} needs its UUID")
        gatt[table_name] = {role: c.uuid(u, f"{where}.{role}") for role, u in roles.items()}
    return gatt


def _check_streams(
    c: _Checker, streams_doc: object, protocols: tuple[str, ...], settings: dict[str, object]
) -> tuple[StreamSpec, ...]:
    if not isinstance(streams_doc, list) or not streams_doc:
        raise c.fail("streams", "needs one or more [[streams]] tables")
    streams = tuple(_check_stream(c, s, i) for i, s in enumerate(streams_doc))
    producible = {k for p in protocols for k in PROTOCOLS[p].streams}
    index: dict[str, int] = {}
    for i, s in enumerate(streams):
        if s.kind in index:
            raise c.fail(f"streams[{i}].kind", f"a second {s.kind!r} stream (one per kind)")
        index[s.kind] = i
        if s.kind not in producible:
            needs = next(p.name for p in PROTOCOLS.values() if s.kind in p.streams)
            raise c.fail(
                f"streams[{i}].kind", f"{s.kind!r} needs protocol {needs!r} (add it to protocols or drop the stream)"
            )
    used = [spec for spec in PROTOCOLS.values() if spec.name in protocols]
    for kind, key in (spec.rate_setting for spec in used if spec.rate_setting):
        if kind in index:
            i = index[kind]
            rate = streams[i].rate_hz or 0
            if rate != settings[key]:
                raise c.fail(f"streams[{i}].rate_hz", f"{rate:g} must equal settings.{key} ({settings[key]})")
    for kind, key in (spec.channel_mask_setting for spec in used if spec.channel_mask_setting):
        if kind in index:
            i = index[kind]
            enabled = bin(int(settings[key])).count("1")
            named = len(streams[i].channels)
            if named != enabled:
                raise c.fail(f"streams[{i}].channels", f"{named} names, but settings.{key} enables {enabled} channels")
    return streams


def load_profile(path: pathlib.Path) -> DeviceProfile:
    """Read and validate one profile; ProfileError says what is wrong and where."""
    path = pathlib.Path(path)
    c = _Checker(path)
    doc = _read_toml(path)
    c.keys(doc, None, _REQUIRED, _OPTIONAL)

    name = c.string(doc["name"], "name")
    if name != path.stem:
        raise c.fail("name", f"{name!r} must equal the file name {path.stem!r} (rename one of them)")
    label = c.string(doc["label"], "label")
    protocols = c.strings(doc["protocols"], "protocols")
    if not protocols:
        raise c.fail("protocols", f"must list at least one protocol ({', '.join(PROTOCOLS)})")
    for i, p in enumerate(protocols):
        if p not in PROTOCOLS:
            raise c.fail(
                f"protocols[{i}]", f"{p!r} is not a known protocol (known: {', '.join(PROTOCOLS)})"
            )
    if len(set(protocols)) != len(protocols):
        raise c.fail("protocols", "lists a protocol twice")
    priority = c.integer(doc.get("priority", _OPTIONAL["priority"]), "priority")
    min_mtu = c.integer(doc.get("min_mtu", _OPTIONAL["min_mtu"]), "min_mtu", DEFAULT_ATT_MTU, MAX_ATT_MTU)

    match = c.table(doc["match"], "match")
    c.keys(match, "match", (), _MATCH_KEYS)
    name_prefixes = c.strings(match.get("name_prefixes", []), "match.name_prefixes")
    services = tuple(
        c.uuid(u, f"match.services[{i}]")
        for i, u in enumerate(c.strings(match.get("services", []), "match.services"))
    )
    if not name_prefixes and not services:
        raise c.fail("match", "give name_prefixes or services, otherwise the profile matches every device")

    gatt = _check_gatt(c, c.table(doc["gatt"], "gatt"), protocols)
    settings = _check_settings(c, c.table(doc.get("settings", _OPTIONAL["settings"]), "settings"), protocols)

    streams = _check_streams(c, doc["streams"], protocols, settings)

    return DeviceProfile(
        name=name,
        label=label,
        path=path,
        protocols=protocols,
        priority=priority,
        min_mtu=min_mtu,
        name_prefixes=name_prefixes,
        services=services,
        gatt=gatt,
        settings=settings,
        streams=streams,
    )


def load_profiles(directory: pathlib.Path | None = None) -> dict[str, DeviceProfile]:
    """Every ``*.toml`` profile in a directory (default: ``default_devices_dir()``), by name."""
    directory = pathlib.Path(directory) if directory is not None else default_devices_dir()
    if not directory.is_dir():
        raise ProfileError(
            directory, None, f"not a directory of device profiles (set {DEVICES_ENV} to the devices/ folder)"
        )
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        raise ProfileError(
            directory, None, f"no *.toml device profiles here (set {DEVICES_ENV} to the devices/ folder)"
        )
    return {p.name: p for p in map(load_profile, paths)}


def best_profile(
    profiles: Iterable[DeviceProfile], name: str | None, service_uuids: Iterable[str]
) -> DeviceProfile | None:
    """The highest-priority profile matching an advertisement (ties: first by name), or None."""
    service_uuids = tuple(service_uuids)
    candidates = [p for p in profiles if p.matches(name, service_uuids)]
    if not candidates:
        return None
    return min(candidates, key=lambda p: (-p.priority, p.name))
