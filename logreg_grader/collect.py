"""``logreg-collect`` (``make collect``): an LMS's submissions download into ``submitted/``.

    logreg-collect --assignment 04_gradients downloaded/submissions.zip [--times times.csv]

writes, for each student, ``submitted/<student>/04_gradients/04_gradients.ipynb`` with
``timestamp.txt`` (nbgrader's file: when it was handed in, when known) and ``collected.json``
(where it came from, whether the LMS marked it late). The layouts it reads:

- **Canvas** (*Download Submissions*): flat files ``<name>_<user id>_<file id>_<file name>``,
  with ``LATE_`` before the user id when Canvas counts it late and ``anon_<id>`` instead of
  name and user id under anonymous grading. A student who uploads a file named like an earlier
  one gets ``<file name>-1.ipynb``, ``-2`` ...: the highest number (then the highest file id)
  is the latest. Canvas writes every file of the zip at the moment it builds the zip, so the
  times in it are the download's, not the submissions': times come from ``--times`` only, and
  Canvas's ``LATE_`` is kept as the lateness when no time is known.
- **Moodle** (*Download all submissions*): ``<Full name>_<participant id>_assignsubmission_file_``
  as a folder holding the student's files, or as a prefix of each file name. The time is the
  one each file carries in the zip, unless all carry the same minute (the zip's own time), or
  ``--times`` (Moodle's grading worksheet: ``Identifier``, ``Last modified (submission)``).

Students are matched to the roster of course.toml (Canvas: user id = the roster's ``ID``;
Moodle: the worksheet's e-mail, else the full name); without a roster the id is the LMS's name
part (``doejane``). Nothing is skipped silently: older copies, files that are not notebooks,
notebooks under another name (copied under their own name: ``make grade`` then reports
``failed: missing_notebook`` naming them), people not on the roster and roster students with
nothing in the zip are all listed. Exit status 0, or 2 for bad arguments or an unreadable zip.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import struct
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from logreg_grader import release
from logreg_grader import term as termmod
from logreg_grader.course import COLLECTED, STAMP, Course

MAX_FILE = 50 * 1024**2  # as logreg-grade: a larger notebook is refused
CANVAS = re.compile(
    r"^(?:(?P<name>(?!LATE_|anon_)[^_/]+)_)?(?P<late>LATE_)?"
    r"(?P<uid>\d+|anon_[0-9A-Za-z]+)_(?P<fid>\d+)_(?P<file>.+)$"
)
MOODLE = re.compile(
    r"^(?P<name>.+)_(?P<pid>\d+)_assign(?:submission|feedback)_(?P<plugin>[a-z]+)_(?P<rest>.*)$"
)
TIME_KEYS = ("student", "id", "identifier", "email address", "email", "full name", "name")
TIME_VALUES = ("submitted", "submitted_at", "last modified (submission)", "time", "timestamp")


class CollectError(Exception):
    pass


@dataclass
class Entry:
    """One file of the download, attributed to one person of the LMS."""

    lms: str  # "canvas" or "moodle"
    key: str  # who, as the LMS names them: Canvas user id / anon id, Moodle participant id
    name: str  # the LMS's name for them ("doejane", "Jane Doe")
    file: str  # the file as the student handed it in (path inside their submission)
    data: bytes
    order: int  # later uploads sort higher (Canvas's file id, else the position in the zip)
    when: dt.datetime | None = None  # the time the zip gives it (None: not trusted)
    late: bool = False  # Canvas's LATE_


@dataclass
class Report:
    collected: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a person should look at

    def text(self, aid: str) -> str:
        lines = [
            f"{aid}: {len(self.collected)} collected or updated, {len(self.unchanged)} unchanged"
        ]
        lines += [f"  {c}" for c in self.collected]
        if self.notes:
            lines.append("to look at:")
            lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)


# --- reading the download -----------------------------------------------------------------


def _ut_time(info: zipfile.ZipInfo) -> dt.datetime | None:
    """The UTC modification time of an entry's extended-timestamp field (0x5455), if any."""
    extra, i = info.extra, 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4 : i + 4 + size]
        if tag == 0x5455 and len(body) >= 5 and body[0] & 1:
            return dt.datetime.fromtimestamp(struct.unpack_from("<i", body, 1)[0], dt.UTC)
        i += 4 + size
    return None


def _zip_time(info: zipfile.ZipInfo, tz: dt.tzinfo) -> dt.datetime:
    return _ut_time(info) or dt.datetime(*info.date_time, tzinfo=tz)


def _files(archive: zipfile.ZipFile, notes: list[str], where: str = ""):
    """(path, ZipInfo, bytes) of every file, nested zips opened one level deep."""
    for info in archive.infolist():
        path = info.filename
        parts = path.split("/")
        if info.is_dir() or "__MACOSX" in parts or parts[-1] in (".DS_Store", "Thumbs.db"):
            continue
        if info.file_size > MAX_FILE:
            notes.append(f"{where}{path}: larger than 50 MB, not collected")
            continue
        data = archive.read(info)
        if path.lower().endswith(".zip") and not where:
            try:
                inner = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile:
                notes.append(f"{path}: not a valid zip, not collected")
                continue
            for sub, sub_info, sub_data in _files(inner, notes, where=f"{path}!"):
                yield f"{path}/{sub}", sub_info, sub_data
            continue
        yield path, info, data


def read_download(path: Path, tz: dt.tzinfo, notes: list[str]) -> list[Entry]:
    """Every file of a Canvas or Moodle submissions zip, attributed to its student."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise CollectError(f"{path}: not a readable zip file ({err})") from err
    entries, unknown = [], []
    with archive:
        files = list(_files(archive, notes))
    for index, (name, info, data) in enumerate(files):
        top, _, inner = name.partition(".zip/") if ".zip/" in name else (name, "", "")
        first = top.split("/")
        m = CANVAS.match(first[-1]) if len(first) <= 2 else None
        if m:
            file = m["file"] + (f".zip/{inner}" if inner else "")
            entries.append(
                Entry(
                    "canvas",
                    m["uid"],
                    m["name"] or m["uid"],
                    file,
                    data,
                    int(m["fid"]) * 10_000 + index,
                    late=bool(m["late"]),
                )
            )
            continue
        parts = name.split("/")
        for i, part in enumerate(parts):
            mm = MOODLE.match(part)
            if mm:
                rest = "/".join(p for p in [mm["rest"], *parts[i + 1 :]] if p)
                if mm["plugin"] != "file":
                    notes.append(f"{name}: Moodle {mm['plugin']} submission, not a file: ignored")
                    break
                entries.append(
                    Entry(
                        "moodle",
                        mm["pid"],
                        mm["name"],
                        rest,
                        data,
                        index,
                        when=_zip_time(info, tz),
                    )
                )
                break
        else:
            unknown.append(name)
    if not entries:
        raise CollectError(
            f"{path}: neither a Canvas nor a Moodle submissions download (first files: "
            f"{unknown[:3]}; expected <name>_<user id>_<file id>_<file> or "
            "<Full name>_<id>_assignsubmission_file_/<file>)"
        )
    notes += [f"{u}: not named as Canvas or Moodle name files: not collected" for u in unknown]
    moodle = [e for e in entries if e.lms == "moodle"]
    if len({e.key for e in moodle}) > 1 and len({_minute(e.when) for e in moodle}) == 1:
        notes.append(
            "every file of this Moodle zip carries the same time (the zip's own): submission "
            "times unknown unless --times gives them"
        )
        for e in moodle:
            e.when = None
    return entries


def _minute(when: dt.datetime | None):
    return when.replace(second=0, microsecond=0) if when else None


# --- submission times from a CSV ----------------------------------------------------------


def read_times(path: Path, term: termmod.Term) -> dict[str, dt.datetime]:
    """{who: time} from a CSV: a key column (student id, e-mail, name, Moodle's Identifier)
    and a time column (submitted, Moodle's 'Last modified (submission)'). Empty or '-' times
    are left out."""
    if not path.is_file():
        raise CollectError(f"--times: {path} does not exist")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    delimiter = max(",;\t", key=text.split("\n", 1)[0].count)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    cols = {c.strip().casefold(): c for c in reader.fieldnames or []}
    keys = [cols[k] for k in TIME_KEYS if k in cols]
    value = next((cols[k] for k in TIME_VALUES if k in cols), None)
    if not keys or value is None:
        raise CollectError(
            f"--times: {path} needs a column naming the student (one of {list(TIME_KEYS)}) and "
            f"one with the time (one of {list(TIME_VALUES)}); it has {reader.fieldnames}"
        )
    out = {}
    for n, row in enumerate(reader, start=2):
        raw = (row.get(value) or "").strip()
        if raw in ("", "-"):
            continue
        when = term.parse_time(raw, f"--times {path.name} row {n}")
        for k in keys:
            if (row.get(k) or "").strip():
                out[_fold(row[k])] = when
    return out


def _fold(text: str) -> str:
    return " ".join(str(text).split()).casefold()


# --- matching people and choosing the notebook ----------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold()) or "student"


def identify(entries: list[Entry], term: termmod.Term, notes: list[str]) -> dict[str, list]:
    """{student id: entries}: each LMS person matched to the roster (or named after the LMS's
    name without one). People not on the roster are reported and left out."""
    people: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        people.setdefault((e.lms, e.key), []).append(e)
    out: dict[str, list[Entry]] = {}
    slugs: dict[str, set] = {}
    for (lms, key), mine in people.items():
        slugs.setdefault(_slug(mine[0].name), set()).add((lms, key))
    for (lms, key), mine in sorted(people.items()):
        name = mine[0].name
        if term.roster:
            found = term.find(key) if lms == "canvas" else None
            if found is None and lms == "moodle":
                found = term.find(name)
            if found is None:
                notes.append(
                    f"{name} ({lms} id {key}): not on the roster ({term.roster_file.name}): "
                    "not collected"
                )
                continue
            sid = found.id
        else:
            sid = _slug(name) if len(slugs[_slug(name)]) == 1 else f"{_slug(name)}-{key}"
            if not termmod.ID_PATTERN.match(sid):
                sid = f"{lms}-{key}"
        if sid in out:
            notes.append(f"{sid}: two LMS accounts map to this student; only one is collected")
            continue
        out[sid] = mine
    return out


def choose(aid: str, mine: list[Entry], notes: list[str], sid: str):
    """(the notebook to grade or None, other notebooks to copy under their own name)."""
    pattern = re.compile(rf"^{re.escape(aid)}(?:-(\d+))?(?: ?\((\d+)\))?\.ipynb$", re.I)
    notebooks, others = [], []
    for e in mine:
        base = e.file.rsplit("/", 1)[-1]
        if ".ipynb_checkpoints" in e.file.split("/"):
            continue
        if base.lower().endswith(".ipynb"):
            notebooks.append(e)
        else:
            others.append(e)
    for e in others:
        notes.append(f"{sid}: {e.file}: not a notebook, not collected")
    matched = []
    for e in notebooks:
        m = pattern.match(e.file.rsplit("/", 1)[-1])
        if m:
            matched.append(((int(m[1] or 0), int(m[2] or 0), e.order), e))
    if not matched:
        if notebooks:
            names = ", ".join(e.file for e in notebooks)
            notes.append(
                f"{sid}: no {aid}.ipynb, found {names}: copied under that name "
                f"(rename it to {aid}.ipynb in submitted/{sid}/{aid}/ to grade it)"
            )
        else:
            notes.append(f"{sid}: no notebook in the submission: nothing collected")
        return None, notebooks
    matched.sort(key=lambda pair: pair[0])
    latest = matched[-1][1]
    older = [e.file for _, e in matched[:-1]]
    if older:
        notes.append(f"{sid}: kept {latest.file} (the latest), older copies skipped: {older}")
    strays = [e for e in notebooks if all(e is not m for _, m in matched)]
    for e in strays:
        notes.append(f"{sid}: {e.file}: another notebook, not collected (only {aid} is graded)")
    return latest, []


# --- writing submitted/ ---------------------------------------------------------------------


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def write(course: Course, sid: str, aid: str, files: dict[str, bytes], when, info) -> bool:
    """Replace submitted/<sid>/<aid>/ with ``files`` (+ timestamp.txt, collected.json);
    False when it already held exactly these."""
    dest = course.submitted(sid, aid)
    stamp = _stamp(when) if when else None
    if dest.is_dir() and not dest.is_symlink():
        have = {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()}
        meta = json.loads(have.pop(COLLECTED, b"{}") or b"{}")
        old_stamp = have.pop(STAMP, b"").decode(errors="replace").strip() or None
        same_meta = {k: meta.get(k) for k in ("late_mark", "time")} == {
            k: info.get(k) for k in ("late_mark", "time")
        }
        if have == files and old_stamp == stamp and same_meta:
            return False
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = dest.parent / f".{aid}.collect-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        if when:
            os.utime(tmp / name, (when.timestamp(), when.timestamp()))
    if stamp:
        (tmp / STAMP).write_text(stamp, encoding="utf-8")
    (tmp / COLLECTED).write_text(json.dumps(info, indent=1, sort_keys=True), encoding="utf-8")
    old = dest.parent / f".{aid}.old-{os.getpid()}"
    if dest.exists() or dest.is_symlink():
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old.exists() or old.is_symlink():
        if old.is_symlink() or not old.is_dir():
            old.unlink()
        else:
            shutil.rmtree(old)
    return True


def collect(
    course: Course, aid: str, download: Path, times: Path | None = None, dry_run: bool = False
) -> Report:
    term = termmod.load(course.root)
    report = Report()
    entries = read_download(download, term.timezone, report.notes)
    known_times = read_times(times, term) if times else {}
    people = identify(entries, term, report.notes)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if not dry_run:
        course.make_private()
    for sid, mine in sorted(people.items()):
        latest, strays = choose(aid, mine, report.notes, sid)
        if latest is None and not strays:
            continue
        pick = latest or strays[0]
        person = term.roster.get(sid)
        keys = [sid, pick.key, f"participant {pick.key}", pick.name]
        keys += [person.email, person.name, person.lms_id] if person else []
        when = next((known_times[_fold(k)] for k in keys if k and _fold(k) in known_times), None)
        source = "times" if when else "zip" if pick.when else "unknown"
        when = when or pick.when
        if pick.late and when is None:
            report.notes.append(f"{sid}: Canvas marks it late; its time is unknown")
        files = {f"{aid}.ipynb": latest.data} if latest else {}
        files |= {e.file.rsplit("/", 1)[-1]: e.data for e in strays}
        info = {
            "source": pick.lms,
            "download": download.name,
            "file": pick.file,
            "late_mark": "Canvas" if pick.late else "",
            "time": source,
            "collected_at": now,
        }
        label = f"{sid}: {pick.file}" + (f", handed in {term.local(when)}" if when else "")
        label += " (marked late by Canvas)" if pick.late else ""
        if dry_run:
            report.collected.append(label + " [dry run]")
        elif write(course, sid, aid, files, when, info):
            report.collected.append(label)
        else:
            report.unchanged.append(sid)
    if term.roster:
        absent = [s for s in term.roster if s not in people]
        if absent:
            report.notes.append(
                f"nothing in the download from {len(absent)} roster students (they will be "
                f"missing unless handed in otherwise): {', '.join(absent)}"
            )
    return report


def collect_main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="logreg-collect",
        description="Put a Canvas or Moodle submissions download (zip) into "
        "submitted/<student>/<id>/<id>.ipynb, with each submission's time and lateness.",
    )
    parser.add_argument("download", type=Path, help="the LMS's submissions zip")
    parser.add_argument("--assignment", required=True, help="the assignment id, e.g. 04_gradients")
    parser.add_argument(
        "--times",
        type=Path,
        help="CSV of submission times (Moodle's grading worksheet, or student,submitted)",
    )
    parser.add_argument("--root", type=Path, default=release.ROOT, help="course root")
    parser.add_argument("--dry-run", action="store_true", help="say what would be written")
    args = parser.parse_args(argv)
    course = Course(args.root.resolve())
    try:
        course.assignments(args.assignment)
        if not args.download.is_file():
            raise CollectError(f"{args.download}: no such file (the LMS's submissions zip)")
        with course.lock():
            report = collect(course, args.assignment, args.download, args.times, args.dry_run)
    except (CollectError, termmod.TermError, release.SourceError) as err:
        print(f"collect: {err}", file=sys.stderr)
        return 2
    print(report.text(args.assignment))
    return 0
