"""Device profiles: the shipped ones load, broken ones fail naming file and field, matching picks the right one."""

import pathlib
import re

import pytest

from biofeedback.sensors.profiles import (
    DeviceProfile,
    ProfileError,
    StreamSpec,
    best_profile,
    default_devices_dir,
    load_profile,
    load_profiles,
    normalize_uuid,
)

REPO_DEVICES = pathlib.Path(__file__).resolve().parents[2] / "devices"
HR_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
EMG_TAIL = "-0000-4d6b-8e4f-6f70656e454d"


@pytest.fixture(scope="module")
def shipped() -> dict[str, DeviceProfile]:
    return load_profiles(REPO_DEVICES)


# --- UUIDs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, full",
    [
        ("180d", HR_SERVICE),
        ("0x180D", HR_SERVICE),
        (" 2A37 ", "00002a37-0000-1000-8000-00805f9b34fb"),
        ("0000180D", HR_SERVICE),
        ("0000180D-0000-1000-8000-00805F9B34FB", HR_SERVICE),
        ("FB005C80-02E7-F387-1CAD-8ACD2D8DF0C8", PMD_SERVICE),
        ("fb005c8002e7f3871cad8acd2d8df0c8", PMD_SERVICE),
    ],
)
def test_normalize_uuid(text, full):
    assert normalize_uuid(text) == full


@pytest.mark.parametrize("text", ["", "xyz", "18d", "180g", "0x", "12345", "fb005c80-02e7-f387-1cad-8acd2d8df0"])
def test_normalize_uuid_rejects(text):
    with pytest.raises(ValueError, match="is not a UUID"):
        normalize_uuid(text)


# --- The shipped profiles ---------------------------------------------------------------------


def test_default_dir_is_the_repository_devices(monkeypatch):
    monkeypatch.delenv("BIOFEEDBACK_DEVICES", raising=False)
    assert default_devices_dir() == REPO_DEVICES
    assert set(load_profiles()) == {p.stem for p in REPO_DEVICES.glob("*.toml")} >= {"hrs-strap", "polar-h10", "open-emg", "ganglion"}


def test_default_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BIOFEEDBACK_DEVICES", str(tmp_path))
    assert default_devices_dir() == tmp_path
    (tmp_path / "hrs-strap.toml").write_text((REPO_DEVICES / "hrs-strap.toml").read_text())
    assert list(load_profiles()) == ["hrs-strap"]


def test_every_shipped_profile_loads(shipped):
    assert sorted(shipped) == sorted(p.stem for p in REPO_DEVICES.glob("*.toml"))
    for name, p in shipped.items():
        assert p.name == name and p.path == REPO_DEVICES / f"{name}.toml"
        assert p.label


def test_hrs_strap(shipped):
    p = shipped["hrs-strap"]
    assert (p.protocols, p.priority, p.min_mtu) == (("hrs",), 0, 23)
    assert (p.name_prefixes, p.services) == ((), (HR_SERVICE,))
    assert p.uuid("hrs", "measurement") == "00002a37-0000-1000-8000-00805f9b34fb"
    assert p.streams == (
        StreamSpec("hr", "bpm", ("hr",), None, False, False),
        StreamSpec("rr", "ms", ("rr",), None, False, False),
    )


def test_polar_h10(shipped):
    p = shipped["polar-h10"]
    assert (p.protocols, p.priority, p.min_mtu) == (("hrs", "polar-pmd"), 10, 232)
    assert p.name_prefixes == ("Polar H10",)
    assert p.uuid("polar-pmd", "service") == PMD_SERVICE
    assert p.uuid("pmd", "control") == "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
    assert p.gatt["pmd"]["data"] == "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
    assert p.uuid("hrs", "service") == HR_SERVICE
    assert p.settings == {
        "ecg_rate_hz": 130,
        "ecg_resolution_bits": 14,
        "ecg_true_rate_hz": (128.0, 131.0),
        "ecg_start_timeout_s": 3.0,
    }
    assert p.stream("ecg") == StreamSpec("ecg", "uV", ("ecg",), 130.0, False, True)
    assert [s.kind for s in p.streams] == ["hr", "rr", "ecg"]


def test_open_emg(shipped):
    p = shipped["open-emg"]
    assert (p.protocols, p.min_mtu, p.name_prefixes) == (("open-emg",), 247, ("OpenEMG",))
    assert p.services == (f"b10fee00{EMG_TAIL}",)
    roles = {"service": "00", "info": "01", "control": "02", "data": "03", "status": "04"}
    assert p.gatt == {"emg": {role: f"b10fee{n}{EMG_TAIL}" for role, n in roles.items()}}
    assert p.uuid("open-emg", "data") == f"b10fee03{EMG_TAIL}"
    assert p.settings == {"sample_rate_hz": 1000, "channel_mask": 3}
    emg = p.stream("emg")
    assert emg == StreamSpec("emg", "uV", ("left_trapezius", "right_trapezius"), 1000.0, True, True)
    assert p.stream("status").rate_hz is None


def test_lookups_of_absent_roles_and_streams_say_so(shipped):
    with pytest.raises(ProfileError, match=r"hrs-strap\.toml: field 'gatt\.pmd\.control'"):
        shipped["hrs-strap"].uuid("polar-pmd", "control")
    with pytest.raises(ProfileError, match="no stream of kind 'ecg'"):
        shipped["hrs-strap"].stream("ecg")


def test_profiles_are_hashable(shipped):
    assert len(set(shipped.values())) == len(shipped)


# --- Matching and priority --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, services, expected",
    [
        ("Polar H10 1A2B3C4D", ["180d"], "polar-h10"),
        ("Polar H10 1A2B3C4D", [HR_SERVICE, "0000feee-0000-1000-8000-00805f9b34fb"], "polar-h10"),
        ("Polar H9 1A2B3C4D", ["0x180D"], "hrs-strap"),
        ("Garmin HRM-Pro", [HR_SERVICE.upper()], "hrs-strap"),
        (None, ["180d"], "hrs-strap"),
        ("Polar H10 1A2B3C4D", [], None),
        ("OpenEMG-3A7F", [f"B10FEE00{EMG_TAIL}"], "open-emg"),
        ("OpenEMG-3A7F", [], None),
        (None, [f"b10fee00{EMG_TAIL}"], None),
        ("MyDevice", [f"b10fee00{EMG_TAIL}"], None),
        ("OpenEMG-3A7F", ["not-a-uuid", f"b10fee00{EMG_TAIL}"], "open-emg"),
        ("Speaker", ["110b"], None),
        ("Polar Sense 1A2B3C4D", ["180d"], "polar-verity"),
        ("Polar OH1 1A2B3C4D", ["180d"], "polar-verity"),
        ("BITalino-3B-8C", ["c566488a-0882-4e1b-a6d0-0b717e652234"], "bitalino"),
    ],
)
def test_best_profile(shipped, name, services, expected):
    best = best_profile(shipped.values(), name, services)
    assert (best.name if best else None) == expected


def test_matches(shipped):
    polar, strap = shipped["polar-h10"], shipped["hrs-strap"]
    assert polar.matches("Polar H10 1", ["180d"]) and strap.matches("Polar H10 1", ["180d"])
    assert not polar.matches("polar h10 1", ["180d"])
    assert strap.matches("anything", iter(["180D"]))
    assert not strap.matches("anything", ["180f"])


def test_priority_decides_and_ties_break_by_name(tmp_path):
    text = (REPO_DEVICES / "hrs-strap.toml").read_text()
    for name, priority in (("b-strap", 5), ("a-strap", 5), ("c-strap", 1)):
        body = text.replace('name = "hrs-strap"', f'name = "{name}"').replace("priority = 0", f"priority = {priority}")
        (tmp_path / f"{name}.toml").write_text(body)
    profiles = load_profiles(tmp_path)
    assert [p.priority for p in profiles.values()] == [5, 5, 1]
    assert best_profile(profiles.values(), "x", ["180d"]).name == "a-strap"
    assert best_profile(reversed(list(profiles.values())), "x", ["180d"]).name == "a-strap"
    assert best_profile([profiles["c-strap"]], "x", ["180d"]).name == "c-strap"


# --- Broken profiles --------------------------------------------------------------------------


def _write(tmp_path: pathlib.Path, base: str, replace=None, append: str = "") -> pathlib.Path:
    """A copy of a shipped profile with (old, new) replacements, or a list of them, and text appended."""
    text = (REPO_DEVICES / f"{base}.toml").read_text()
    for old, new in [replace] if isinstance(replace, tuple) else replace or []:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / f"{base}.toml"
    path.write_text(text + append)
    return path


BROKEN = [
    # (base profile, (old, new) replacement, appended text, field named, words in the advice)
    ("polar-h10", ('control = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"', 'control = "xyz"'), "",
     "gatt.pmd.control", "'xyz' is not a UUID (use 4 hex digits or a 128-bit UUID)"),
    ("polar-h10", ('label = "Polar H10 chest strap"\n', ""), "", "label", "missing"),
    ("polar-h10", ("priority = 10", "priority = 10\ncolour = \"red\""), "", "colour", "unknown field"),
    ("polar-h10", ("priority = 10", 'priority = "high"'), "", "priority", "expected an integer"),
    ("polar-h10", ("priority = 10", "priority = true"), "", "priority", "expected an integer"),
    ("polar-h10", ("min_mtu = 232", "min_mtu = 20"), "", "min_mtu", "out of range (23-517)"),
    ("polar-h10", ('name = "polar-h10"', 'name = "polar-h9"'), "", "name", "must equal the file name 'polar-h10'"),
    ("polar-h10", ('protocols = ["hrs", "polar-pmd"]', 'protocols = ["hrs", "polar-pmx"]'), "",
     "protocols[1]", "'polar-pmx' is not a known protocol"),
    ("polar-h10", ('protocols = ["hrs", "polar-pmd"]', 'protocols = "hrs"'), "", "protocols", "expected a list"),
    ("polar-h10", ('protocols = ["hrs", "polar-pmd"]', "protocols = []"), "", "protocols", "at least one"),
    ("polar-h10", ("[gatt.pmd]", "[gatt.pmx]"), "", "gatt.pmd", "needs a [gatt.pmd] table"),
    ("polar-h10", ('data = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"', ""), "", "gatt.pmd.data", "missing"),
    ("hrs-strap", ('measurement = "2a37"', 'measurement = 10807'), "", "gatt.hrs.measurement", "expected a string"),
    ("hrs-strap", ("[gatt.hrs]", "[gatt.pmd]\ncontrol = \"2a37\"\n[gatt.hrs]"), "", "gatt.pmd",
     "no protocol in 'protocols' uses it"),
    ("hrs-strap", ('services = ["180d"]', 'services = ["180x"]'), "", "match.services[0]", "is not a UUID"),
    ("hrs-strap", ('services = ["180d"]', "services = []"), "", "match", "matches every device"),
    ("hrs-strap", ("name_prefixes = []", "name_prefix = []"), "", "match.name_prefix", "unknown field"),
    ("hrs-strap", ('kind = "rr"', 'kind = "spo2"'), "", "streams[1].kind", "'spo2' is not a stream kind"),
    ("hrs-strap", ('kind = "rr"\nunit = "ms"\nchannels = ["rr"]', 'kind = "hr"\nunit = "bpm"\nchannels = ["hr"]'),
     "", "streams[1].kind", "a second 'hr' stream"),
    ("hrs-strap", ('unit = "ms"', 'unit = "s"'), "", "streams[1].unit", "rr blocks carry 'ms'"),
    ("hrs-strap", ('channels = ["rr"]', "channels = []"), "", "streams[1].channels", "one or more distinct"),
    ("hrs-strap", ('channels = ["rr"]', 'channels = ["rr", 5]'), "", "streams[1].channels[1]", "expected a string"),
    ("hrs-strap", ("rate_hz = 0           #", "rate_hz = -1          #"), "", "streams[0].rate_hz",
     "zero or positive"),
    ("hrs-strap", ("has_sequence = false", 'has_sequence = "no"'), "", "streams[0].has_sequence",
     "expected true or false"),
    ("hrs-strap", ("device_time = false\n", "device_time = false\nrate = 4\n"), "", "streams[0].rate",
     "unknown field"),
    ("hrs-strap", None, '\n[[streams]]\nkind = "ecg"\nunit = "uV"\nchannels = ["ecg"]\nrate_hz = 130\n',
     "streams[2].kind", "'ecg' needs protocol 'polar-pmd'"),

    ("polar-h10", ("ecg_rate_hz = 130 ", "ecg_rate_hz = 130.0 "), "", "settings.ecg_rate_hz", "expected an integer"),
    ("polar-h10", ("ecg_start_timeout_s = 3.0 ", "ecg_start_timeout_s = 0 "), "", "settings.ecg_start_timeout_s",
     "must be positive"),
    ("polar-h10", ("ecg_true_rate_hz = [128.0, 131.0]", "ecg_true_rate_hz = 130"), "",
     "settings.ecg_true_rate_hz", "expected [low, high]"),
    ("polar-h10", ("ecg_true_rate_hz = [128.0, 131.0]", "ecg_true_rate_hz = [131.0, 128.0]"), "",
     "settings.ecg_true_rate_hz", "low 131.0 is above high 128.0"),
    ("polar-h10", ("ecg_true_rate_hz = [128.0, 131.0]", "ecg_true_rate_hz = [120.0, 125.0]"), "",
     "settings.ecg_true_rate_hz", "must contain ecg_rate_hz"),
    ("polar-h10", ("ecg_resolution_bits = 14 ", ""), "", "settings.ecg_resolution_bits", "protocol 'polar-pmd' needs it"),
    ("polar-h10", ("rate_hz = 130", "rate_hz = 128"), "", "streams[2].rate_hz", "must equal settings.ecg_rate_hz"),
    ("open-emg", ("channel_mask = 3 ", "channel_mask = 7 "), "", "streams[0].channels",
     "channel_mask enables 3 channels"),
    ("open-emg", ("channel_mask = 3 ", "channel_mask = 256 "), "", "settings.channel_mask", "out of range (1-255)"),
    ("open-emg", ("sample_rate_hz = 1000 ", "sample_rate_hz = 2000 "), "", "streams[0].rate_hz",
     "must equal settings.sample_rate_hz"),
    ("open-emg", ('status = "b10fee04-0000-4d6b-8e4f-6f70656e454d"', ""), "", "gatt.emg.status", "missing"),
]


@pytest.mark.parametrize("base, replace, append, field, advice", BROKEN, ids=[b[3] + ":" + b[4][:20] for b in BROKEN])
def test_broken_profile_names_file_and_field(tmp_path, base, replace, append, field, advice):
    path = _write(tmp_path, base, replace, append)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    err = info.value
    assert str(err).startswith(f"{path}: field '{field}': ")
    assert advice in str(err)
    assert (err.path, err.field) == (path, field)
    with pytest.raises(ProfileError, match=re.escape(f"field '{field}'")):
        load_profiles(tmp_path)


@pytest.mark.parametrize(
    "base, section, top_level, field, advice",
    [
        ("hrs-strap", r"\[\[streams\]\].*", "streams = []", "streams", "needs one or more [[streams]]"),
        ("hrs-strap", r"\[\[streams\]\].*", "streams = 3", "streams", "needs one or more [[streams]]"),
        ("open-emg", r"\[settings\].*?\n(?=\[)", "settings = 5", "settings", "expected a table"),
        ("open-emg", r"\[match\].*?\n(?=\[)", "match = []", "match", "expected a table"),
    ],
)
def test_tables_of_the_wrong_type(tmp_path, base, section, top_level, field, advice):
    text = re.sub(section, "", (REPO_DEVICES / f"{base}.toml").read_text(), count=1, flags=re.S)
    path = tmp_path / f"{base}.toml"
    path.write_text(text.replace("[match]", f"{top_level}\n[match]") if field != "match" else f"{top_level}\n{text}")
    with pytest.raises(ProfileError, match=re.escape(f"field '{field}': {advice}")):
        load_profile(path)


def test_toml_syntax_error_gives_the_line(tmp_path):
    path = _write(tmp_path, "polar-h10", ("priority = 10", "priority = = 10"))
    with pytest.raises(ProfileError, match=r"polar-h10\.toml: not valid TOML: .*line 5") as info:
        load_profile(path)
    assert info.value.field is None


def test_unreadable_files(tmp_path):
    with pytest.raises(ProfileError, match=r"missing\.toml: cannot read the file"):
        load_profile(tmp_path / "missing.toml")
    bad = tmp_path / "latin.toml"
    bad.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ProfileError, match=r"latin\.toml: "):
        load_profile(bad)


def test_load_profiles_needs_a_directory_with_profiles(tmp_path):
    (tmp_path / "README.md").write_text("not a profile")
    with pytest.raises(ProfileError, match=r"no \*\.toml device profiles here \(set BIOFEEDBACK_DEVICES"):
        load_profiles(tmp_path)
    with pytest.raises(ProfileError, match="not a directory of device profiles"):
        load_profiles(tmp_path / "nowhere")


def test_load_profiles_fails_on_any_broken_profile(tmp_path):
    _write(tmp_path, "hrs-strap")
    _write(tmp_path, "open-emg", ('label = "', 'label = 5 #"'))
    with pytest.raises(ProfileError, match=r"open-emg\.toml: field 'label': expected a string"):
        load_profiles(tmp_path)


def test_optional_fields_take_their_defaults(tmp_path):
    text = (REPO_DEVICES / "hrs-strap.toml").read_text()
    text = re.sub(r"^(priority|min_mtu) = .*\n", "", text, flags=re.M)
    text = re.sub(r"^(has_sequence|device_time) = .*\n", "", text, flags=re.M)
    path = tmp_path / "hrs-strap.toml"
    path.write_text(text)
    p = load_profile(path)
    assert (p.priority, p.min_mtu, p.settings) == (0, 23, {})
    assert all(not s.has_sequence and not s.device_time for s in p.streams)


def test_a_new_sensor_is_a_new_file(tmp_path):
    """A second brand of HRS strap with its own name match needs no code."""
    path = tmp_path / "garmin-hrm.toml"
    path.write_text(
        'name = "garmin-hrm"\nlabel = "Garmin HRM"\nprotocols = ["hrs"]\npriority = 5\n'
        '[match]\nname_prefixes = ["HRM-Pro", "HRM-Dual"]\nservices = ["0x180D"]\n'
        '[gatt.hrs]\nservice = "0x180D"\nmeasurement = "0x2A37"\n'
        '[[streams]]\nkind = "rr"\nunit = "ms"\nchannels = ["rr"]\nrate_hz = 0\n'
    )
    profiles = {**load_profiles(REPO_DEVICES), **load_profiles(tmp_path)}
    assert best_profile(profiles.values(), "HRM-Dual:123", ["180d"]).name == "garmin-hrm"
    assert best_profile(profiles.values(), "Wahoo TICKR", ["180d"]).name == "hrs-strap"
    assert profiles["garmin-hrm"].uuid("hrs", "measurement") == "00002a37-0000-1000-8000-00805f9b34fb"
