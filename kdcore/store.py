"""Run history: every finished or stopped run kept in one SQLite file, with the distilled student's weights beside it.

Each operation opens its own short-lived connection (sqlite3 connections must not cross threads) to a WAL-mode
file with a busy timeout and writes in one transaction, so browser sessions, threads and processes can write at
once without losing a row.
A damaged database file is moved aside (never deleted) and a fresh, empty history is started in its place;
`RunStore.recovered_message` then says so once for the UI to show.

A stored student path is trusted only as far as `inside_folder` allows: a copied or hand-edited history may
name any file, so a path that leads out of the `students` folder (absolute, `..`, or through a symlink) is
never read or deleted. `delete_runs` reports such paths in `Deletion.refused` and `Deletion.warning`;
`get_run` gives such a run no `student_path`, and `load_student` says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import operator
import os
import re
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import filelock
import safetensors.torch
from torch import nn

from . import data as kdata
from . import models
from .experiments import RunResult

SCHEMA_VERSION = 2
# Who may delete runs that other sessions saved: a server started with KD_INSTRUCTOR=1.
INSTRUCTOR_ENV = "KD_INSTRUCTOR"
DEFAULT_FILENAME = "history.sqlite3"
STUDENTS_FOLDER = "students"
BUSY_TIMEOUT_S = 10.0
SORT_KEYS = (
    "created",
    "id",
    "kind",
    "dataset",
    "partial",
    "kd_gain",
    "scratch_acc",
    "distilled_acc",
    "student",
    "temperature",
    "alpha",
    "epochs",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    kind TEXT NOT NULL,
    dataset TEXT NOT NULL,
    partial INTEGER NOT NULL,
    config_json TEXT NOT NULL,
    metrics_json TEXT NOT NULL,
    curves_json TEXT NOT NULL,
    student_path TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS runs_dataset_kind ON runs (dataset, kind);
"""
# SQLite's primary result codes for a damaged file; "locked", "busy", "readonly" etc. are not damage.
_DAMAGE_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
_STUDENT_FILE = re.compile(r"run-(\d+)\.safetensors$")


class StoreError(RuntimeError):
    """The run history cannot be read or written; the message says what to do."""


def inside_folder(folder: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """`path` if it leads strictly inside `folder` once `..` and every symlink are followed, else None.

    The one rule for turning a path read from a database or an imported file into a file to open or delete.
    The result is `folder` joined with the real location below it, so what was checked is what gets used: a
    symlink inside `folder` that leads out of it fails the rule, and is neither followed nor removed. Text that
    cannot be a path (a NUL byte) and symlink loops fail it too.
    """
    folder = Path(folder)
    try:
        real_folder = folder.resolve()
        real = (folder / path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if real == real_folder or not real.is_relative_to(real_folder):
        return None
    return folder / real.relative_to(real_folder)


@dataclass(frozen=True)
class RunSummary:
    """One line of the History table: what the run was and how it scored (accuracies are fractions)."""

    id: int
    created: float
    kind: str
    dataset: str
    partial: bool
    config: dict
    kd_gain: float | None
    scratch_acc: float | None
    distilled_acc: float | None
    student: str | None
    temperature: float | None
    alpha: float | None
    epochs: int | None
    owner: str | None = None  # the browser session that saved it (None: the CLI, or an older history)


@dataclass(frozen=True)
class RunRecord:
    """A whole saved run. metrics: {"rows": [ModelRow dicts], "kd_gain", ...}; curves: role -> epoch events."""

    id: int
    created: float
    kind: str
    dataset: str
    partial: bool
    config: dict
    metrics: dict
    curves: dict = field(default_factory=dict)
    student_path: Path | None = None
    # student_path is always inside students_dir (load_student checks again); a stored path that was not is
    # kept as text only, to say so.
    refused_student_path: str | None = None
    students_dir: Path | None = None

    def row(self, role: str) -> dict | None:
        return next((r for r in self.metrics.get("rows", []) if r.get("role") == role), None)


@dataclass(frozen=True)
class Deletion:
    """What `RunStore.delete_runs` did: how many runs went, and the stored student paths it left alone."""

    count: int
    refused: tuple[str, ...] = ()
    students_dir: Path | None = None

    @property
    def warning(self) -> str | None:
        """For the user when some stored paths were refused; None when every student file went as it should."""
        if not self.refused:
            return None
        shown = ", ".join(repr(p) for p in self.refused[:3]) + (" and more" if len(self.refused) > 3 else "")
        return (
            f"{len(self.refused)} deleted run{'s' if len(self.refused) != 1 else ''} named a student file "
            f"that is not in {self.students_dir} ({shown}), so nothing was deleted there. The history was "
            "probably copied from another folder or edited by hand; check those files yourself if you want "
            "them gone."
        )


def _is_damage(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _DAMAGE_CODES
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def _jsonable(value):
    # Curves are event dataclasses and may carry numpy or torch scalars; JSON wants plain dicts and numbers.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__} in the run history")


def _dumps(value) -> str:
    return json.dumps(value, default=_jsonable)


def _run_id(value) -> int:
    # Ids often come from a table selection as numpy integers, which sqlite3 cannot bind.
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise ValueError(f"a run id must be a whole number, got {value!r}") from None


def _metric(rows: list, role: str) -> float | None:
    row = next((r for r in rows if isinstance(r, dict) and r.get("role") == role), None)
    return None if row is None else row.get("accuracy")


class RunStore:
    """The run history at `path` (a SQLite file); the students' weights live in a `students` folder beside it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self.students_dir = self.path.parent / STUDENTS_FOLDER
        self.recovered_message: str | None = None
        self.damaged_path: Path | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the folder for the run history {self.path.parent} "
                f"({exc.strerror or exc}). Set KD_DATA_DIR to a folder you can write to."
            ) from None
        self._anchor: sqlite3.Connection | None = None
        self._anchor_lock = threading.Lock()
        self._call(self._check, recover=True)
        self._hold_open()

    # ---- connections ----------------------------------------------------------------------------

    def _connect(self, *, any_thread: bool = False) -> sqlite3.Connection:
        try:
            # isolation_level=None: transactions are opened explicitly, so writes take the lock up front.
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=not any_thread
            )
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"Cannot open the run history {self.path} ({exc}). Check that the folder is "
                "writable, or set KD_DATA_DIR to one that is."
            ) from None
        conn.row_factory = sqlite3.Row
        return conn

    def _hold_open(self) -> None:
        """Keep one idle connection open for the store's life: when the last connection to a WAL database
        closes, SQLite checkpoints and deletes the WAL, which made every operation pay for an fsync."""
        with self._anchor_lock:
            if self._anchor is None:
                conn = self._connect(any_thread=True)
                conn.execute("SELECT 1 FROM runs LIMIT 1").fetchall()  # opens the file and its WAL index
                self._anchor = conn

    def close(self) -> None:
        """Let go of the file (the store still works; each operation opens its own connection)."""
        with self._anchor_lock:
            if self._anchor is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._anchor.close()
                self._anchor = None

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _call(self, fn, *, recover: bool = True):
        """fn(conn) on a fresh connection; on a damaged file, keep it aside, start afresh and run fn once more."""
        for attempt in (1, 2):
            conn = self._connect()
            try:
                # In WAL mode NORMAL never corrupts the file; a power cut may only lose the last few commits.
                conn.execute("PRAGMA synchronous=NORMAL")
                return fn(conn)
            except sqlite3.DatabaseError as exc:
                if not (recover and attempt == 1 and _is_damage(exc)):
                    if isinstance(exc, sqlite3.OperationalError):
                        raise StoreError(
                            f"The run history {self.path} could not be used ({exc}). Another "
                            "session may be writing a lot right now; try again in a moment."
                        ) from None
                    raise
            finally:
                conn.close()
            self._recover()
        raise AssertionError("unreachable")

    def _check(self, conn: sqlite3.Connection) -> None:
        """Set up WAL and the schema, and read the whole file once so damage shows up now, not mid-page."""
        conn.execute("PRAGMA journal_mode=WAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"The run history {self.path} was written by a newer KD Playground (schema {version}; "
                f"this one reads up to {SCHEMA_VERSION}). Update the app, or set KD_DATA_DIR to "
                "another folder."
            )
        if version < SCHEMA_VERSION:
            with self._transaction(conn):
                columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
                if columns and "owner" not in columns:  # a version-1 history: its runs belong to no session
                    conn.execute("ALTER TABLE runs ADD COLUMN owner TEXT")
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                if version == 0:
                    self._seed_ids(conn)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"database disk image is malformed: {'; '.join(problems[:3])}")

    def _seed_ids(self, conn: sqlite3.Connection) -> None:
        # Ids must not reuse the number of a student file left from an older (e.g. damaged) history:
        # saving would overwrite that file.
        taken = (
            [
                int(m.group(1))
                for p in self.students_dir.glob("run-*.safetensors")
                if (m := _STUDENT_FILE.search(p.name))
            ]
            if self.students_dir.is_dir()
            else []
        )
        if taken:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('runs', ?)", (max(taken),))

    def _recover(self) -> None:
        """Move the damaged file (and its WAL files) aside and start an empty history in its place."""
        # One process at a time: the others must not move the fresh file a first one just made.
        with filelock.FileLock(str(self.path) + ".lock", timeout=BUSY_TIMEOUT_S * 3):
            self.close()
            if not self._healthy():
                self._move_aside()
                self._call(self._check, recover=False)
        self._hold_open()

    def _move_aside(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
        try:
            os.replace(self.path, target)
            # The WAL files belong to the damaged file; left here they would be replayed into the fresh one.
            for suffix in ("-wal", "-shm"):
                side = Path(str(self.path) + suffix)
                if side.exists():
                    os.replace(side, Path(str(target) + suffix))
        except OSError as exc:
            raise StoreError(
                f"The run history {self.path} is damaged and could not be moved aside "
                f"({exc.strerror or exc}). Move or delete it by hand and reload."
            ) from None
        self.damaged_path = target
        self.recovered_message = (
            f"The run history file was damaged; it was kept as {target} and a new, empty history was started."
        )

    def _healthy(self) -> bool:
        conn = self._connect()
        try:
            conn.execute("PRAGMA user_version").fetchone()
            return [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()] == ["ok"]
        except sqlite3.DatabaseError:
            return False
        finally:
            conn.close()

    # ---- writing --------------------------------------------------------------------------------

    def _insert(
        self,
        kind: str,
        dataset: str,
        config: dict,
        metrics: dict,
        curves: dict | None,
        partial: bool,
        student: bytes | None = None,
        owner: str | None = None,
    ) -> int:
        if not isinstance(kind, str) or not kind.strip():
            raise ValueError(f"kind must be a non-empty string such as 'distill' or 'sweep', got {kind!r}")
        if dataset not in kdata.DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(kdata.DATASETS)}")
        for name, value in (("config", config), ("metrics", metrics)):
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be a dict, got a {type(value).__name__}")
        if curves is not None and not isinstance(curves, dict):
            raise ValueError(f"curves must be a dict of role -> epoch events or None, got a {type(curves).__name__}")
        texts = (_dumps(config), _dumps(metrics), _dumps(curves or {}))

        def write(conn: sqlite3.Connection) -> int:
            written: Path | None = None
            try:
                with self._transaction(conn):
                    run_id = conn.execute(
                        "INSERT INTO runs (created, kind, dataset, partial, config_json, metrics_json, curves_json, "
                        "owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (time.time(), kind, dataset, int(bool(partial)), *texts, owner),
                    ).lastrowid
                    if student is not None:
                        written = self._write_student(run_id, student)
                        conn.execute(
                            "UPDATE runs SET student_path = ? WHERE id = ?",
                            (written.relative_to(self.path.parent).as_posix(), run_id),
                        )
            except BaseException:
                if written is not None:
                    written.unlink(missing_ok=True)
                raise
            return run_id

        return self._call(write)

    def _write_student(self, run_id: int, payload: bytes) -> Path:
        self.students_dir.mkdir(parents=True, exist_ok=True)
        final = self.students_dir / f"run-{run_id}.safetensors"
        fd, tmp = tempfile.mkstemp(dir=self.students_dir, prefix=f".run-{run_id}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)  # readers see the old file or the whole new one, never half of it
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final

    def save_run(self, result: RunResult, kind: str = "distill", owner: str | None = None) -> int:
        """Keep a distillation result (config, rows, curves) and its distilled student's weights; returns the id.

        `owner` is the browser session that ran it: that session sees it as its own on the History page.
        """
        if not isinstance(result, RunResult):
            raise ValueError(f"result must be a RunResult, got a {type(result).__name__}")
        student = result.students.get("distilled")
        payload = None
        if student is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}
            payload = safetensors.torch.save(state)
        metrics = {
            "rows": [r.to_json() for r in result.rows],
            "kd_gain": result.kd_gain,
            "seconds": result.seconds,
            "classes": list(result.classes),
        }
        return self._insert(
            kind, result.config.dataset, result.config.to_dict(), metrics, result.curves, result.partial, payload, owner
        )

    def save_record(
        self,
        kind: str,
        dataset: str,
        config: dict,
        metrics: dict,
        curves: dict | None = None,
        partial: bool = False,
        owner: str | None = None,
    ) -> int:
        """Keep an experiment result that has no single student (sweep, fraction, ...); returns the id."""
        return self._insert(kind, dataset, config, metrics, curves, partial, owner=owner)

    def _student_file(self, stored) -> Path | None:
        """The file a stored student path names, if it is inside `students_dir` (see inside_folder); else None."""
        if not isinstance(stored, str) or not stored:
            return None
        return inside_folder(self.students_dir, self.path.parent / stored)

    def delete_runs(self, ids, owner: str | None = None) -> Deletion:
        """Delete these runs and their student files; unknown ids are skipped, and with `owner` so are runs
        another session saved (a session may delete only its own runs; see `may_delete_all`).

        A stored student path that leads outside `students_dir`, or to a folder, is left alone and listed in
        the returned `Deletion.refused`; the run's row goes all the same.
        """
        ids = [_run_id(i) for i in ids]
        if not ids:
            return Deletion(0, (), self.students_dir)
        where = f"id IN ({','.join('?' * len(ids))})" + ("" if owner is None else " AND owner = ?")
        args = ids + ([] if owner is None else [owner])

        def delete(conn: sqlite3.Connection) -> tuple[int, list[str]]:
            with self._transaction(conn):
                paths = [r[0] for r in conn.execute(f"SELECT student_path FROM runs WHERE {where}", args) if r[0]]
                count = conn.execute(f"DELETE FROM runs WHERE {where}", args).rowcount
            return count, paths

        count, paths = self._call(delete)
        # Files go only after the rows are gone, so a failure never leaves a row pointing at nothing.
        refused = []
        for stored in paths:
            target = self._student_file(stored)
            if target is None or target.is_dir():
                refused.append(str(stored))
            else:
                target.unlink(missing_ok=True)
        return Deletion(count, tuple(refused), self.students_dir)

    # ---- reading --------------------------------------------------------------------------------

    def list_runs(
        self,
        dataset: str | None = None,
        kind: str | None = None,
        sort_by: str = "created",
        descending: bool = True,
        owner: str | None = None,
    ) -> list[RunSummary]:
        """Runs matching the filters (`owner`: only that session's), sorted by `sort_by` (one of SORT_KEYS);
        runs without that value come last."""
        if sort_by not in SORT_KEYS:
            raise ValueError(f"sort_by must be one of: {', '.join(SORT_KEYS)}; got {sort_by!r}")
        where, args = [], []
        for column, value in (("dataset", dataset), ("kind", kind), ("owner", owner)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT id, created, kind, dataset, partial, config_json, metrics_json, owner FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._call(lambda conn: conn.execute(sql, args).fetchall())
        summaries = [self._summary(r) for r in rows]
        present = [s for s in summaries if getattr(s, sort_by) is not None]
        missing = [s for s in summaries if getattr(s, sort_by) is None]
        present.sort(key=lambda s: (getattr(s, sort_by), s.id), reverse=descending)
        return present + missing

    @staticmethod
    def _summary(row: sqlite3.Row) -> RunSummary:
        config, metrics = json.loads(row["config_json"]), json.loads(row["metrics_json"])
        rows = metrics.get("rows") or []
        return RunSummary(
            id=row["id"],
            created=row["created"],
            kind=row["kind"],
            dataset=row["dataset"],
            partial=bool(row["partial"]),
            config=config,
            kd_gain=metrics.get("kd_gain"),
            scratch_acc=_metric(rows, "scratch") if rows else metrics.get("scratch_acc"),
            distilled_acc=_metric(rows, "distilled") if rows else metrics.get("distilled_acc"),
            student=config.get("student"),
            temperature=config.get("temperature"),
            alpha=config.get("alpha"),
            epochs=config.get("epochs"),
            owner=row["owner"],
        )

    def get_run(self, run_id: int) -> RunRecord:
        """The whole run; KeyError if there is no run with this id (e.g. it was deleted in another session)."""
        run_id = _run_id(run_id)
        row = self._call(lambda conn: conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())
        if row is None:
            raise KeyError(f"There is no saved run with id {run_id!r} in {self.path}; it may have been deleted.")
        stored = row["student_path"]
        student = self._student_file(stored)
        return RunRecord(
            id=row["id"],
            created=row["created"],
            kind=row["kind"],
            dataset=row["dataset"],
            partial=bool(row["partial"]),
            config=json.loads(row["config_json"]),
            metrics=json.loads(row["metrics_json"]),
            curves=json.loads(row["curves_json"]),
            student_path=student,
            refused_student_path=str(stored) if stored and student is None else None,
            students_dir=self.students_dir,
        )

    def count(self) -> int:
        return self._call(lambda conn: conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def records_since(self, after: float, until: float, kinds: tuple[str, ...]) -> list[RunRecord]:
        """Runs of these kinds saved in (after, until] (time.time() values), oldest first, in one query.

        For live summaries such as the class board: curves are not read (left empty) and no student path is
        resolved, so no file is touched.
        """
        marks = ",".join("?" * len(kinds))
        sql = (
            "SELECT id, created, kind, dataset, partial, config_json, metrics_json FROM runs"
            f" WHERE created > ? AND created <= ? AND kind IN ({marks}) ORDER BY created, id"
        )
        rows = self._call(lambda conn: conn.execute(sql, (after, until, *kinds)).fetchall())
        return [
            RunRecord(
                id=r["id"],
                created=r["created"],
                kind=r["kind"],
                dataset=r["dataset"],
                partial=bool(r["partial"]),
                config=json.loads(r["config_json"]),
                metrics=json.loads(r["metrics_json"]),
            )
            for r in rows
        ]


def open_store(path: str | os.PathLike | None = None) -> RunStore:
    """The run history at `path`, by default history.sqlite3 in the data folder (KD_DATA_DIR)."""
    return RunStore(kdata.data_dir() / DEFAULT_FILENAME if path is None else path)


def load_student(record: RunRecord) -> nn.Module:
    """The run's distilled student, rebuilt from its config and loaded with its saved weights, in eval mode.

    The path is checked against the record's `students_dir` again here, as the file may have been swapped for
    a symlink since `get_run`.
    """
    path, refused = record.student_path, record.refused_student_path
    if path is not None and record.students_dir is not None:
        path = inside_folder(record.students_dir, path)
        if path is None:
            refused = str(record.student_path)
    if refused is not None:
        raise StoreError(
            f"The history names the student file of run {record.id} as {refused!r}, which is outside "
            f"{record.students_dir}, so it was not read. Delete the run from the history, or run it again."
        )
    if path is None:
        raise StoreError(f"Run {record.id} ({record.kind}) has no saved student; only distillation runs keep one.")
    if not path.is_file():
        raise StoreError(
            f"The student file of run {record.id} is missing ({path}). "
            "Delete the run from the history, or run it again."
        )
    model = models.build(record.config["student"], record.config["dataset"])
    try:
        state = safetensors.torch.load_file(str(path))
        model.load_state_dict(state)
    except Exception as exc:  # a truncated file or one from another architecture
        raise StoreError(
            f"The student file of run {record.id} ({path}) cannot be loaded "
            f"({exc}). Delete the run from the history, or run it again."
        ) from None
    return model.eval()


def may_delete_all() -> bool:
    """Whether this server lets a session delete runs other sessions saved (KD_INSTRUCTOR=1)."""
    return os.environ.get(INSTRUCTOR_ENV, "").strip().lower() in ("1", "true", "yes", "on")
