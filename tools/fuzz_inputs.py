"""The larger bad-input run (issue 13, item 6): the suite's bad-input matrix, hostile variants of its arguments, and
random mutations of session files, through every command that reads them; counts tracebacks and hangs (0 expected).

The cases and their checks come from ``tests/test_bad_inputs.py``, imported, not copied: its test functions are called
with stand-ins for pytest's fixtures (damaged metadata and rows x every reading command, hostile arguments, malformed
protocol and calibration TOML, saved calibrations and diaries, each judged as the suite judges it). On top:

* hostile arguments: each numeric argument of the matrix given every value of ``HOSTILE_VALUES``;
* mutated session files, copies of a recorded session: bytes flipped anywhere (``flip``) or inside one block's samples
  (``flip-samples``), the file cut short (``truncate``), rows deleted with sqlite3 (``delete-rows``), random hostile
  values written into random cells (``bad-cells``) and several of the matrix's damages at once (``matrix-combo``).
  Each copy is read with ``SessionReader`` (every stream, block, beat, gap and event) and by every reading command of
  the matrix; a command may read what is undamaged (exit 0) or refuse with one line (exit 2).

Counted against the code: a traceback (an exception out of a command or the reader, or "Traceback" in its output), a
hang (longer than the matrix's ``CASE_LIMIT_S``), another exit status, a suite check that fails (wrong message), and a
change of samples that no reader reported (bytes flipped inside blocks' samples must be found by their checksums).
Changes to beats, events, gaps or raw packets carry no checksum; they are counted apart, for information.

    python tools/fuzz_inputs.py --files 200 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from biofeedback.store import SessionReader  # noqa: E402
from biofeedback.store.errors import StoreError  # noqa: E402
from tests import test_bad_inputs as matrix  # noqa: E402
from tests.store.conftest import write_session  # noqa: E402

HOSTILE_VALUES = ("nan", "inf", "-inf", "1e308", "-1e308", "abc", "nan,nan")
"""Values given to every numeric argument of the matrix's hostile arguments; none is a usable value."""
MUTATIONS = ("flip", "flip-samples", "truncate", "delete-rows", "bad-cells", "matrix-combo")
BAD_CELLS = (None, "NaN", "abc", -1, 2 ** 63 - 1, -(2 ** 63), 1e308, -1e308, 0, b"\x00", b"\xff" * 9, 1e-300)
"""Values written into random cells of a session file (sqlite3 takes them whatever the column's type)."""
TABLES = ("meta", "streams", "blocks", "beats", "gaps", "events")


class Captured:
    """Stands in for pytest's ``capsys``: what a command printed, with everything ever printed kept in ``seen``."""

    def __init__(self) -> None:
        self.out, self.err, self.seen = io.StringIO(), io.StringIO(), []

    @contextlib.contextmanager
    def capturing(self):
        with contextlib.redirect_stdout(self.out), contextlib.redirect_stderr(self.err):
            yield self

    def readouterr(self) -> tuple[str, str]:
        out, err = self.out.getvalue(), self.err.getvalue()
        self.out.seek(0), self.out.truncate(), self.err.seek(0), self.err.truncate()
        self.seen.append(out + err)
        return out, err


def outcome(call) -> tuple[str, str]:
    """Run ``call(capsys)`` (a suite check, or one command) and say how it went (ok, traceback, hang or wrong) and why."""
    cap = Captured()
    try:
        with cap.capturing():
            call(cap)
    except pytest.fail.Exception as exc:
        return ("hang" if str(exc).startswith("hang") else "traceback"), str(exc)
    except AssertionError as exc:
        printed = "".join(cap.seen).strip().splitlines()
        return ("traceback" if "Traceback" in "".join(cap.seen) else "wrong"), f"{exc} {printed[-1:]}"
    except matrix.Hang:
        return "hang", f"longer than {matrix.CASE_LIMIT_S} s"
    except Exception as exc:  # noqa: BLE001 - a traceback is what this run counts
        return "traceback", f"{type(exc).__name__}: {exc}"
    return "ok", ""


class Home:
    """A fresh data home (``BIOFEEDBACK_HOME``) per case, with the good session and a damaged copy beside it, as the
    matrix's ``damaged`` fixture makes them."""

    def __init__(self, root: Path, good: Path) -> None:
        self.root, self.good, self.n = root, good, 0

    def fresh(self) -> Path:
        self.n += 1
        home = self.root / f"home{self.n}"
        home.mkdir()
        os.environ["BIOFEEDBACK_HOME"] = str(home)
        return home

    def damaged(self):
        """The matrix fixture's ``make(sql, args)``: a damaged copy of the good session in a fresh home."""
        folder = self.fresh() / "clients" / matrix.CLIENT / "sessions"
        folder.mkdir(parents=True)
        shutil.copy(self.good, folder / matrix.GOOD_NAME)

        def make(sql: str, args: tuple) -> Path:
            path = folder / matrix.SESSION_NAME
            shutil.copy(self.good, path)
            matrix._sql(path, sql, args)
            return path
        return make


def matrix_cases(home: Home):
    """The suite's matrix, as (table, name, call) with call(capsys)."""
    for case in matrix.DAMAGED_META:
        for command in matrix.COMMANDS:
            yield "damaged-meta", f"{case} x {command}", lambda cap, case=case, command=command: (
                matrix.test_damaged_metadata_is_one_line_naming_file_and_field(case, command, home.damaged(), cap))
    for case in matrix.DAMAGED_ROWS:
        for command in matrix.COMMANDS:
            yield "damaged-rows", f"{case} x {command}", lambda cap, case=case, command=command: (
                matrix.test_damaged_rows_are_skipped_and_the_rest_is_read(case, command, home.damaged(), cap))
        yield "damaged-rows", f"{case} x reader", lambda cap, case=case: (
            matrix.test_reader_reports_each_damaged_row_and_keeps_the_others(case, home.damaged(), home.good))
    for argv, names in matrix.HOSTILE_ARGUMENTS:
        yield "hostile-arguments", " ".join(argv), lambda cap, argv=argv, names=names: (
            matrix.test_hostile_argument_is_one_line_naming_it(argv, names, home.damaged(), cap))
    for table, test in ((matrix.BAD_PROTOCOLS, matrix.test_bad_protocol_names_file_and_field_before_sensors),
                        (matrix.BAD_RELAX_TABLES, matrix.test_bad_relax_table_names_file_and_field),
                        (matrix.BAD_CALIBRATIONS, matrix.test_bad_calibration_protocol_names_file_and_field)):
        for case in table:
            yield test.__name__, case, lambda cap, case=case, test=test: test(case, home.fresh(), cap)
    for commands, table, test in ((("session", "relax"), matrix.SAVED_CALIBRATIONS,
                                   matrix.test_bad_saved_calibration_names_file_and_field),
                                  (("list", "add", "trend"), matrix.DIARIES, matrix.test_bad_diary_names_file_and_entry)):
        for case in table:
            for command in commands:
                yield test.__name__, f"{case} x {command}", lambda cap, case=case, command=command, test=test: (
                    test(case, command, home.fresh(), cap))


def hostile_variants(home: Home):
    """Every numeric argument of the matrix's hostile arguments with every value of ``HOSTILE_VALUES``."""
    for argv, names in matrix.HOSTILE_ARGUMENTS:
        if names not in argv:  # not an argument with a value (a client ID)
            continue
        at = argv.index(names) + 1
        for value in HOSTILE_VALUES:
            if value == argv[at]:
                continue
            variant = [*argv[:at], value, *argv[at + 1:]]
            yield "hostile-variants", " ".join(variant), lambda cap, variant=variant, names=names: (
                matrix.test_hostile_argument_is_one_line_naming_it(variant, names, home.damaged(), cap))


def read_all(path: Path) -> tuple[list[str], dict[str, str]]:
    """Everything the reader gives of ``path``: its problems, and a fingerprint of the samples of each stream and of
    the beats, gaps, events and metadata."""
    def digest(*arrays) -> str:
        h = hashlib.sha256()
        for a in arrays:
            h.update(repr(a).encode() if not isinstance(a, np.ndarray) else np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    with SessionReader(path) as reader:
        prints = {"meta": digest(sorted(reader.meta.items(), key=lambda kv: repr(kv[0])))}
        for stream, source in reader.streams():
            prints[f"samples {stream}/{source}"] = digest(*reader.samples(stream, source))
        for _ in reader.raw_blocks():
            pass
        beats = reader.beats()
        prints["beats"] = digest(*(beats[k] for k in ("t_s", "rr_raw_ms", "rr_corrected_ms", "flags")))
        prints["gaps"] = digest(reader.gaps())
        prints["events"] = digest(reader.events(), reader.phases())
        prints["duration"] = digest(reader.duration_s())
        return reader.check(), prints


def _flip(data: bytearray, rng: random.Random, lo: int, hi: int) -> None:
    at = rng.randrange(lo, max(lo + 1, hi))
    for i in range(at, min(at + rng.randint(1, 16), len(data))):
        data[i] ^= rng.randrange(1, 256)


def mutate(path: Path, kind: str, rng: random.Random) -> None:
    """Damage the session file at ``path`` in place, as ``kind`` says (one of ``MUTATIONS``)."""
    if kind in ("delete-rows", "bad-cells", "matrix-combo"):
        conn = sqlite3.connect(path)
        try:
            for _ in range(rng.randint(1, 3)):
                table = rng.choice(TABLES)
                rowids = [r[0] for r in conn.execute(f"SELECT rowid FROM {table}")]
                if kind == "delete-rows" and rowids:
                    doomed = rng.sample(rowids, rng.randint(1, max(1, len(rowids) // 10)))
                    conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(r,) for r in doomed])
                elif kind == "bad-cells" and rowids:
                    column = rng.choice([c[1] for c in conn.execute(f"PRAGMA table_info({table})")])
                    with contextlib.suppress(sqlite3.IntegrityError):  # SQLite refuses it (NOT NULL, the rowid)
                        conn.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
                                     (rng.choice(BAD_CELLS), rng.choice(rowids)))
                elif kind == "matrix-combo":
                    sql, args = rng.choice([*matrix.DAMAGED_ROWS.values(),
                                            *(v[:2] for v in matrix.DAMAGED_META.values())])
                    conn.execute(sql, args)
            conn.commit()
            conn.execute("PRAGMA journal_mode = DELETE")
        finally:
            conn.close()
        return
    data = bytearray(path.read_bytes())
    if kind == "truncate":
        del data[rng.randrange(len(data)):]
    elif kind == "flip":
        for _ in range(rng.randint(1, 4)):
            _flip(data, rng, 0 if rng.random() < 0.1 else 100, len(data))
    else:  # flip-samples: inside one block's samples, found by searching the file for its blob
        with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
            blobs = [r[0] for r in conn.execute("SELECT data FROM blocks WHERE length(data) > 32")]
        conn.close()
        blob = rng.choice(blobs)
        start = data.find(blob)  # a blob that spills onto overflow pages is not found: then flip anywhere
        _flip(data, rng, *((start, start + len(blob) - 16) if start >= 0 else (0, len(data))))
    path.write_bytes(data)


def limited(call):
    """``call()`` under the matrix's hang limit; raises ``matrix.Hang`` past it."""
    previous = signal.signal(signal.SIGALRM, matrix._alarm)
    signal.alarm(matrix.CASE_LIMIT_S)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def mutated_cases(home: Home, files: int, rng: random.Random, whole: dict[str, str], silent: Counter):
    """``files`` mutated copies of the good session, each read by the reader and every reading command."""
    for i in range(files):
        kind = MUTATIONS[i % len(MUTATIONS)]
        path = home.damaged()("SELECT 1", ())
        mutate(path, kind, rng)

        def reader(cap, path=path, kind=kind) -> None:
            try:
                problems, prints = limited(lambda: read_all(path))
            except StoreError:
                return  # refused with one line
            if problems or kind not in ("flip", "flip-samples"):
                return
            for key, value in prints.items():
                if whole.get(key, value) != value:
                    silent["samples" if key.startswith("samples") else key] += 1
        yield f"mutated {kind}", f"#{i} x reader", reader
        for command, argv in matrix._commands(path).items():
            yield f"mutated {kind}", f"#{i} x {command}", lambda cap, argv=argv: _read_or_refuse(cap, argv)


def _read_or_refuse(cap: Captured, argv: list[str]) -> None:
    """A reading command on a damaged file: exit 0 (reads the undamaged rest), or exit 2 with one line."""
    code, out, err = matrix.run(cap, argv)
    if code != 0:
        matrix.error_line(code, err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="mutated session files (each x every reading command)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-matrix", action="store_true", help="only the random part")
    parser.add_argument("--show", type=int, default=5, help="failed cases to list per kind")
    args = parser.parse_args()
    t0 = time.monotonic()
    rng = random.Random(args.seed)
    tally: dict[str, Counter] = {}
    failed: dict[str, list[str]] = {}
    silent: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        good = root / "good" / matrix.GOOD_NAME
        good.parent.mkdir()
        os.environ["BIOFEEDBACK_HOME"] = str(root / "good-home")
        write_session(good)
        matrix._sql(good, "UPDATE meta SET value = ? WHERE key = 'calibration'",
                    (json.dumps(matrix.CALIBRATION_META),))
        whole = read_all(good)[1]
        home = Home(root, good)
        cases = () if args.no_matrix else itertools.chain(matrix_cases(home), hostile_variants(home))
        # lazily: each mutated file is made (in its own home) just before its cases run
        for table, name, call in itertools.chain(cases, mutated_cases(home, args.files, rng, whole, silent)):
            result, why = outcome(call)
            tally.setdefault(table, Counter())[result] += 1
            if result != "ok":
                failed.setdefault(result, []).append(f"{table}: {name} ({why[:300]})")
    total = Counter()
    for table, counts in tally.items():
        total.update(counts)
        print(f"{table:>58}: {sum(counts.values()):5d} cases  " + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for result, names in failed.items():
        print(f"{result} ({len(names)}):\n  " + "\n  ".join(names[:args.show]) + ("\n  ..." if len(names) > args.show else ""))
    others = ", ".join(f"{k} {v}" for k, v in sorted(silent.items()) if k != "samples") or "none"
    print(f"silent changes no reader reported (bytes flipped): samples {silent['samples']} (checksummed, 0 expected); "
          f"elsewhere (no checksum): {others}")
    print(f"{sum(total.values())} cases: {total['traceback']} tracebacks, {total['hang']} hangs, {total['wrong']} "
          f"wrong answers; {time.monotonic() - t0:.0f} s")
    sys.exit(1 if total["traceback"] or total["hang"] or total["wrong"] or silent["samples"] else 0)


if __name__ == "__main__":
    main()
