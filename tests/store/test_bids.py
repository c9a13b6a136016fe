"""A study exported into one BIDS dataset passes the official validator (bids-validator-deno, from PyPI).

Two clients with two sessions each, every session exported with ``fmt="bids"`` into one folder. The validator must
find no error, and no warning but the ones README.md's "BIDS export" section explains (``EXPLAINED_WARNINGS``).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

from biofeedback.store import export_session, new_session_path
from biofeedback.store.export import BidsDataset

from .conftest import UTC_ANCHOR, write_session

SHIFT_DAYS = 30
EXPLAINED_WARNINGS = {
    ("JSON_KEY_RECOMMENDED", "HEDVersion"),
    ("JSON_KEY_RECOMMENDED", "SourceDatasets"),
    ("SIDECAR_KEY_RECOMMENDED", "Instructions"),
    ("SIDECAR_KEY_RECOMMENDED", "CogAtlasID"),
    ("SIDECAR_KEY_RECOMMENDED", "CogPOID"),
    ("SIDECAR_KEY_RECOMMENDED", "InstitutionName"),
    ("SIDECAR_KEY_RECOMMENDED", "InstitutionAddress"),
    ("SIDECAR_KEY_RECOMMENDED", "InstitutionalDepartmentName"),
}
"""(code, subCode) of the warnings README.md explains: metadata the program does not have."""


def _validator() -> str:
    found = shutil.which("bids-validator-deno") or shutil.which("bids-validator-deno", path=str(Path(sys.executable).parent))
    assert found, "bids-validator-deno is not installed: pip install -e '.[test]'"
    return found


def _study(out: Path, bids: BidsDataset) -> list[Path]:
    files = []
    for n, client in enumerate(("C001", "C002")):
        for k in range(2):
            anchor = UTC_ANCHOR + k * 3 * 86400 + n * 3600
            recorded = write_session(new_session_path(client, anchor), client_id=client, utc_anchor=anchor)
            files += export_session(recorded.path, "bids", out, shift_days=SHIFT_DAYS, bids=bids)
    return files


def _issues(out: Path) -> list[dict]:
    run = subprocess.run([_validator(), str(out), "--format", "json"], capture_output=True, text=True, timeout=120)
    return json.loads(run.stdout)["issues"]["issues"]


def test_a_two_client_two_session_study_passes_the_bids_validator(home, tmp_path):
    out = tmp_path / "bids"
    files = _study(out, BidsDataset(("A. Researcher", "B. Clinician"), "CC-BY-4.0"))
    issues = _issues(out)
    assert not [i for i in issues if i["severity"] == "error"], json.dumps(issues, indent=1)
    warnings = {(i["code"], i.get("subCode")) for i in issues if i["severity"] == "warning"}
    assert warnings <= EXPLAINED_WARNINGS, warnings - EXPLAINED_WARNINGS

    assert sorted(str(p.relative_to(out)) for p in out.glob("sub-*/ses-*")) == [
        "sub-C001/ses-1", "sub-C001/ses-2", "sub-C002/ses-1", "sub-C002/ses-2"]
    assert (out / "participants.tsv").read_text() == "participant_id\nsub-C001\nsub-C002\n"
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["Authors"] == ["A. Researcher", "B. Clinician"] and description["License"] == "CC-BY-4.0"
    assert "CC-BY-4.0" in (out / "README").read_text()
    for events in out.glob("sub-*/ses-*/beh/*_events.tsv"):
        sidecar = json.loads(events.with_suffix(".json").read_text())
        header = events.read_text().splitlines()[0].split("\t")
        assert all(c in sidecar for c in header), header  # every column described
        assert sidecar["TaskName"] == "trapezius-release"
        kinds = {line.split("\t")[2] for line in events.read_text().splitlines()[1:]}
        assert kinds == {"phase", "calibration", "marker", "note", "BAD_ACQ_SKIP"}  # no beat, no HR sample
    for gz in [f for f in files if f.suffix == ".gz"]:
        head = gz.read_bytes()[:10]
        assert head[3] & 0x08 == 0 and head[4:8] == b"\0\0\0\0", gz  # no file name (FNAME flag), mtime 0
        assert gzip.decompress(gz.read_bytes())


def test_a_later_export_without_authors_keeps_the_datasets_and_the_default_licence_says_so(home, tmp_path):
    out = tmp_path / "bids"
    _study(out, BidsDataset(("A. Researcher",)))
    recorded = write_session(new_session_path("C003", UTC_ANCHOR), client_id="C003")
    export_session(recorded.path, "bids", out, shift_days=SHIFT_DAYS)
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["Authors"] == ["A. Researcher"] and description["License"] == "Non-Standard"
    assert "data controller" in (out / "README").read_text()
    assert (out / "participants.tsv").read_text().splitlines()[1:] == ["sub-C001", "sub-C002", "sub-C003"]
    issues = _issues(out)
    assert not [i for i in issues if i["severity"] == "error"]
    warnings = {(i["code"], i.get("subCode")) for i in issues if i["severity"] == "warning"}
    assert warnings <= EXPLAINED_WARNINGS | {("TOO_FEW_AUTHORS", None)}  # one author: the validator asks (README)
