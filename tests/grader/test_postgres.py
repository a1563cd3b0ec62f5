"""A PostgreSQL gradebook shared by several grading machines gives the grades of a serial run.

A real PostgreSQL server (Debian's package, started by tests/grader/pg_server.py as an unprivileged
user, on 127.0.0.1 and a free port) gets a database owned by an ordinary role. Two "machines"
(two course roots, each with some of the students' submissions) run logreg-grade against it
through $LOGREG_GRADEBOOK_URL, then four processes write to it at once. Every cell score, total,
status, grades.csv row and feedback must equal the serial SQLite run of
tests/grader/class_builder.py.
The server is stopped at the end, also when a test fails. Without PostgreSQL the slow tests
skip (and fail when CI=true).
"""

import class_builder as cb
import pg_server
import pytest
from nbgrader_harness import REPO

from logreg_grader import gradebook as gradebook_db  # noqa: E402

# Two machines grade their own students into the one gradebook, A with two workers. They run
# one after the other: tools/sandbox.py gives slot k the same uid in every grading run on one
# host, so two runs on ONE host would kill each other's sandboxed processes. Concurrent writers
# on the shared gradebook are tested without the sandbox (test_concurrent_writers_...).
BUG = "bug-" + cb.bugs()[0]["name"]
MACHINES = {"a": (2, ["perfect", BUG]), "b": (1, ["untouched"])}


@pytest.fixture(scope="module")
def postgres():
    bindir = pg_server.binaries_or_skip()
    with pg_server.PostgresServer(bindir) as server:  # stopped on leaving, even on failure
        yield server


@pytest.fixture(scope="module")
def shared(postgres, tmp_path_factory):
    """Both machines graded against one PostgreSQL gradebook; {name: Course}, gradebook URL."""
    url = postgres.create_database("logreg_grades", user="grader", password="s3cret-pw")
    courses = {}
    for name, (jobs, students) in MACHINES.items():
        course = cb.build(tmp_path_factory.mktemp(f"machine-{name}"), students=students)
        assert sorted(course.students) == sorted(students), "class_builder renamed a student"
        result = cb.run_grade(course, jobs, db_url=url)
        assert result.returncode == 0, cb.output(result)
        courses[name] = course
    return courses, url


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return cb.serial_run(tmp_path_factory)


def _only(mapping, students):
    return {k: v for k, v in mapping.items() if k[0] in students}


@pytest.mark.slow
def test_machines_report_no_database_errors(shared):
    courses, _ = shared
    for course in courses.values():
        assert cb.lock_errors(cb.output(course.result)) == []


@pytest.mark.slow
def test_gradebook_lives_in_postgres_not_sqlite(shared):
    courses, url = shared
    for course in courses.values():
        assert not (course.root / "gradebook" / "gradebook.db").exists()
    from sqlalchemy import create_engine, text

    engine = create_engine(gradebook_db.url_for(url))
    try:
        with engine.connect() as con:
            n = con.execute(text("SELECT count(*) FROM submitted_assignment")).scalar()
    finally:
        engine.dispose()
    assert n == sum(len(a) for c in courses.values() for a in c.students.values())


@pytest.mark.slow
@pytest.mark.parametrize("part", ["cells", "totals"])
def test_shared_gradebook_equals_serial_sqlite_run(shared, serial, part):
    courses, url = shared
    _, reference = serial
    merged = {}
    for course in courses.values():
        merged.update(cb.outcome(course, gradebook_db.url_for(url))[part])
    assert merged == reference[part]


@pytest.mark.slow
@pytest.mark.parametrize("part", ["csv", "feedback"])
def test_each_machine_writes_the_serial_csv_rows_and_feedback(shared, serial, part):
    courses, url = shared
    _, reference = serial
    for course in courses.values():
        got = cb.outcome(course, gradebook_db.url_for(url))[part]
        students = set(course.students)
        if part == "csv":  # every machine exports the whole shared gradebook
            got = [r for r in got if r["student"] in students]
            want = [r for r in reference["csv"] if r["student"] in students]
        else:
            want = _only(reference[part], students)
        assert got == want


def test_gradebook_url_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(gradebook_db.ENV, raising=False)
    assert gradebook_db.url(tmp_path) == f"sqlite:///{tmp_path / 'gradebook' / 'gradebook.db'}"
    monkeypatch.setenv(gradebook_db.ENV, "postgresql://u:p@db.example.org:5433/grades")
    assert gradebook_db.url(tmp_path) == "postgresql+psycopg2://u:p@db.example.org:5433/grades"


def test_nbgrader_config_reads_the_same_variable(monkeypatch):
    """nbgrader's own commands (formgrader, nbgrader db ...) use the same gradebook."""
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv(gradebook_db.ENV, "postgresql://u:p@db.example.org/grades")
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    assert cfg.CourseDirectory.db_url == "postgresql+psycopg2://u:p@db.example.org/grades"
    monkeypatch.delenv(gradebook_db.ENV)
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    assert cfg.CourseDirectory.db_url == f"sqlite:///{REPO / 'gradebook' / 'gradebook.db'}"


def test_unreachable_postgres_is_one_clear_error_without_the_password(monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg2://grader:topsecret@127.0.0.1:{port}/grades?connect_timeout=3"
    with pytest.raises(SystemExit) as err:
        gradebook_db.prepare(url)
    message = str(err.value)
    assert "cannot open the gradebook" in message and f":{port}/grades" in message
    assert "topsecret" not in message


@pytest.mark.slow
def test_concurrent_writers_on_the_shared_gradebook(shared):
    _, url = shared
    got, want = cb.concurrent_load(gradebook_db.url_for(url), cb.AIDS[0])
    assert got == want
