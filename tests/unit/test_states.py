"""The job state machine (DESIGN §4): the table, its helpers, and the SQL that mirrors it.

The expected table below is written out by hand from DESIGN §4 so that a change to
``states.TRANSITIONS`` has to be made twice, on purpose.
"""

from __future__ import annotations

import itertools
import re

import pytest

from rhizome.errors import IllegalTransitionError
from rhizome.jobs import states
from rhizome.jobs.model import TERMINAL_STATUSES, JobStatus
from rhizome.jobs.store.queries import load_queries

P, R, Z = JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.PAUSED
C, F, X = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED

EXPECTED: dict[tuple[str, JobStatus], JobStatus] = {
    ("claim", P): R,
    ("reclaim", R): R,
    ("complete", R): C,
    ("fail", R): F,
    ("pause", P): Z,
    ("pause", R): Z,
    ("cancel", P): X,
    ("cancel", Z): X,
    ("cancel", F): X,
    ("cancel", R): X,
    ("release", R): P,
    ("expire", R): P,
    ("resume", Z): P,
    ("retry_due", F): P,
    ("retry", F): P,
    ("retry", X): P,
    ("force_fail", P): F,
    ("force_fail", R): F,
    ("force_fail", Z): F,
}
EXPECTED_ACTIONS = sorted({a for a, _ in EXPECTED})
ALL_PAIRS = list(itertools.product(sorted(states.ACTIONS), list(JobStatus)))


def test_table_matches_design() -> None:
    actual = {(t.action, t.source): t.target for t in states.TRANSITIONS}
    assert actual == EXPECTED
    # no (action, source) pair appears twice with different meanings
    assert len(states.TRANSITIONS) == len(EXPECTED)
    assert sorted(states.ACTIONS) == EXPECTED_ACTIONS


def test_every_transition_has_a_meaning() -> None:
    for t in states.TRANSITIONS:
        assert t.meaning.strip(), t


@pytest.mark.parametrize(("action", "source"), ALL_PAIRS, ids=lambda v: str(v))
def test_find_exhaustive(action: str, source: JobStatus) -> None:
    if (action, source) in EXPECTED:
        t = states.find(action, source)
        assert (t.action, t.source, t.target) == (action, source, EXPECTED[(action, source)])
        # a plain string works as well as the enum
        assert states.find(action, source.value) == t
    else:
        with pytest.raises(IllegalTransitionError) as info:
            states.find(action, source)
        message = info.value.message
        assert source.value in message
        assert action.replace("_", " ") in message
        for allowed in states.sources(action):
            assert allowed.value in message
        assert info.value.hint  # the user is told what to do


@pytest.mark.parametrize("action", EXPECTED_ACTIONS)
def test_target(action: str) -> None:
    targets = {dst for (a, _), dst in EXPECTED.items() if a == action}
    assert len(targets) == 1
    assert states.target(action) == targets.pop()


@pytest.mark.parametrize("action", EXPECTED_ACTIONS)
def test_sources(action: str) -> None:
    expected = [src for (a, src) in EXPECTED if a == action]
    got = states.sources(action)
    assert isinstance(got, tuple)
    assert list(got) == expected  # table order, no duplicates
    assert len(set(got)) == len(got)


def test_unknown_action() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        states.sources("explode")
    with pytest.raises(ValueError, match="unknown action"):
        states.target("explode")
    with pytest.raises(ValueError):
        states.find("explode", P)


def test_unknown_status() -> None:
    with pytest.raises(ValueError):
        states.find("claim", "running")


def test_completed_is_final_and_terminal_rows_only_leave_by_hand() -> None:
    assert not any(t.source is C for t in states.TRANSITIONS)
    leaving_terminal = {
        (t.action, t.source) for t in states.TRANSITIONS if t.source in TERMINAL_STATUSES
    }
    assert leaving_terminal == {
        ("cancel", F),
        ("retry_due", F),
        ("retry", F),
        ("retry", X),
    }


def test_every_status_is_reachable_from_pending() -> None:
    reached = {P}
    frontier = [P]
    while frontier:
        src = frontier.pop()
        for t in states.TRANSITIONS:
            if t.source == src and t.target not in reached:
                reached.add(t.target)
                frontier.append(t.target)
    assert reached == set(JobStatus)


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(JobStatus, JobStatus)))
def test_is_legal(src: JobStatus, dst: JobStatus) -> None:
    expected = any(s == src and d == dst for (_, s), d in EXPECTED.items())
    assert states.is_legal(src, dst) is expected
    assert states.is_legal(src.value, dst.value) is expected


# --- the hot-path SQL agrees with the table -----------------------------------------------

_SET_STATUS = re.compile(r"\bSET\s+status\s*=\s*'(\w+)'", re.IGNORECASE)
_ANY_STATUS = re.compile(r"(?<![\w])(?:\w+\.)?status\s*=\s*'(\w+)'", re.IGNORECASE)


def set_statuses(sql: str) -> set[str]:
    """Statuses a statement writes (``SET status = '...'``)."""
    return set(_SET_STATUS.findall(sql))


def where_statuses(sql: str) -> set[str]:
    """Statuses a statement filters on (every ``status = '...'`` that is not a SET)."""
    return set(_ANY_STATUS.findall(_SET_STATUS.sub("", sql)))


def values(*statuses: JobStatus) -> set[str]:
    return {s.value for s in statuses}


def test_sql_helpers() -> None:
    sql = "UPDATE t j SET status = 'a', x = 1 WHERE j.status = 'b' AND from_status = 'c'"
    assert set_statuses(sql) == {"a"}
    assert where_statuses(sql) == {"b"}


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_claim_sql_matches_table(dialect: str) -> None:
    q = load_queries(dialect)
    if dialect == "postgres":
        select_sql, update_sql = q["claim"], q["claim"]
    else:
        select_sql, update_sql = q["claim_candidates"], q["claim_update"]
    assert where_statuses(select_sql) == values(
        *states.sources("claim"), *states.sources("reclaim")
    )
    assert states.sources("claim") == (P,)
    assert states.sources("reclaim") == (R,)
    assert set_statuses(update_sql) == values(states.target("claim"), states.target("reclaim"))
    # pending rows must be due; processing rows only with an expired lease
    assert re.search(r"status\s*=\s*'pending'\s+AND\s+run_at\s*<=", select_sql)
    assert re.search(r"status\s*=\s*'processing'\s+AND\s+lease_expires_at\s*<", select_sql)


@pytest.mark.parametrize(
    ("dialect", "name"), [("sqlite", "complete_job"), ("postgres", "complete_jobs")]
)
def test_complete_sql_matches_table(dialect: str, name: str) -> None:
    sql = load_queries(dialect)[name]
    assert where_statuses(sql) == values(*states.sources("complete"))
    assert set_statuses(sql) == values(states.target("complete"))
    assert "worker_id" in sql  # only the owner completes


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
@pytest.mark.parametrize(
    ("name", "action"), [("expire_leases", "expire"), ("promote_retries", "retry_due")]
)
def test_reaper_sql_matches_table(dialect: str, name: str, action: str) -> None:
    sql = load_queries(dialect)[name]
    assert where_statuses(sql) == values(*states.sources(action))
    assert set_statuses(sql) == values(states.target(action))


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_owner_only_sql_requires_processing(dialect: str) -> None:
    q = load_queries(dialect)
    for name in ("heartbeat", "update_progress", "record_checkpoint"):
        assert where_statuses(q[name]) == {"processing"}, name
        assert set_statuses(q[name]) == set(), name


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
@pytest.mark.parametrize(
    ("name", "actions"),
    [
        ("set_failed", ["fail", "force_fail"]),
        ("set_paused", ["pause"]),
        ("set_cancelled", ["cancel"]),
        ("set_released", ["release"]),
        ("set_resumed", ["resume"]),
        ("set_retried", ["retry"]),
    ],
)
def test_guarded_updates_write_the_action_target(
    dialect: str, name: str, actions: list[str]
) -> None:
    """These run after ``states.find`` approved the change, so they filter by id only."""
    sql = load_queries(dialect)[name]
    assert set_statuses(sql) == {states.target(a).value for a in actions}
    assert where_statuses(sql) == set()
