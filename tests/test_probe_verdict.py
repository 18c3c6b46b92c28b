"""The verdict logic: fed a deviating observation, it must say `deviates` at the right step.

Each probe's real observation is gathered once (live), then single values are replaced by
outcomes the documentation forbids; the verdict must name exactly that step. Outcomes the
documentation allows (EPOLLEXCLUSIVE waking 2 of 4) must still match.
"""

from __future__ import annotations

import copy

import pytest

from fdscope.probes import exclusive, fdsetsize, oneshot, rdhup, stale, trigger
from fdscope.probes.core import NOT_OBSERVED, Expect, Observation, StepSkip, judge, kernel_release

KERNEL = kernel_release()


def _trigger_obs(mode: str, transport: str = "socketpair"):
    return trigger.observe(mode, transport)


def _gather():
    """(probe name, observation, expectations builder) for every probe, observed live."""
    return {
        "trigger-level": (_trigger_obs("level"), trigger.expectations),
        "trigger-edge": (_trigger_obs("edge"), trigger.expectations),
        "trigger-edge-pipe": (_trigger_obs("edge", "pipe"), trigger.expectations),
        "oneshot": (oneshot.observe("socketpair"), oneshot.expectations),
        "fdsetsize": (fdsetsize.observe(), fdsetsize.expectations),
        "stale": (stale.observe("tcp"), stale.expectations),
        "exclusive": (exclusive.observe(KERNEL), exclusive.expectations),
        "rdhup": (rdhup.observe("socketpair"), rdhup.expectations),
    }


@pytest.fixture(scope="module")
def observed():
    return _gather()


def _with(obs: Observation, key: str, value) -> Observation:
    fake = copy.deepcopy(obs)
    assert key in fake.values, f"no step {key}"
    fake.values[key] = value
    return fake


def _judge(observed, probe: str, key: str | None = None, value=None, kernel: str = KERNEL):
    obs, build = observed[probe]
    if key is not None:
        obs = _with(obs, key, value)
    return judge(probe, build(obs.ctx, kernel), obs)


def _step_no(observed, probe: str, key: str) -> int:
    obs, build = observed[probe]
    return [e.key for e in build(obs.ctx, KERNEL)].index(key) + 1


def wrong(exp: Expect):
    """A value the documentation rules out for this expectation."""
    if exp.rule == "range":
        return exp.expected[0] - 1
    if exp.rule == "error":
        return ["readable"]
    if exp.rule == "contains":
        return []
    if exp.rule == "one_of":
        return ["EPOLLPRI"]
    if isinstance(exp.expected, list):
        return [] if exp.expected else ["EPOLLIN"]
    if isinstance(exp.expected, int):
        return exp.expected + 1
    return f"not {exp.expected}"


def test_every_real_observation_matches(observed):
    for name in observed:
        res = _judge(observed, name)
        bad = [(s.action, s.observed, s.expected) for s in res.steps if s.ok is False]
        assert res.verdict == "matches", (name, bad)


def test_any_single_wrong_value_deviates_at_its_step(observed):
    for name, (obs, build) in observed.items():
        expects = build(obs.ctx, KERNEL)
        for i, exp in enumerate(expects, start=1):
            fake = _with(obs, exp.key, wrong(exp))
            res = judge(name, build(fake.ctx, KERNEL), fake)
            assert res.verdict == "deviates", (name, exp.key)
            assert res.deviating_step == i, (name, exp.key, res.deviating_step)
            assert res.steps[i - 1].ok is False
            assert all(s.ok for j, s in enumerate(res.steps, start=1) if j != i)


# Named outcomes that must NOT be observed, per probe (the trio habit: list them explicitly).
FORBIDDEN = [
    ("trigger-edge", "in.read10", ["EPOLLIN"]),          # ET re-reporting after a partial read
    ("trigger-edge", "out.again", ["EPOLLOUT"]),         # ET repeating EPOLLOUT with no change
    ("trigger-edge", "out.busy", 1),                     # even one repeat in the busy loop
    ("trigger-level", "in.read10", []),                  # LT forgetting unread data
    ("trigger-level", "out.busy", 999),                  # LT skipping one writable report
    ("trigger-level", "out.full", ["EPOLLOUT"]),         # writable while the buffer is full
    ("trigger-level", "in.drained", ["EPOLLIN"]),        # readable after EAGAIN
    ("oneshot", "more_data", ["EPOLLIN"]),               # ONESHOT reporting twice
    ("oneshot", "fdinfo.disarmed", ["EPOLLIN", "EPOLLONESHOT"]),  # mask kept its event bits
    ("oneshot", "rearmed", []),                          # MOD not re-arming
    ("fdsetsize", "select.high", ["readable"]),          # select accepting fd 1024
    ("fdsetsize", "select.low", "ValueError: filedescriptor out of range in select()"),
    ("fdsetsize", "poll.high", "ValueError: x"),         # poll refusing fd 1024
    ("stale", "closed_reports", []),                     # close() removing the registration
    ("stale", "del_closed", "ok"),
    ("stale", "inspect.status", "ok"),                   # inspect missing the closed entry
    ("stale", "reused_reports", []),                     # entry dropped when the number is reused
    ("stale", "inspect.reused", "closed"),               # inspect missing the reuse
    ("stale", "all_closed", ["6:EPOLLIN"]),              # entry outliving the last close
    ("exclusive", "plain", 1),                           # no herd without EXCLUSIVE
    ("exclusive", "exclusive", 0),                       # nobody woke
    ("exclusive", "exclusive", 5),                       # more wake-ups than waiters
    ("exclusive", "mod", "ok"),
    ("rdhup", "shutdown", ["EPOLLIN"]),                  # no RDHUP on half-close
    ("rdhup", "read_eof", "EAGAIN"),                     # EOF not seen as 0
    ("rdhup", "both_shut", ["EPOLLIN", "EPOLLRDHUP"]),   # no HUP when both sides shut
]


@pytest.mark.parametrize(("probe", "key", "value"), FORBIDDEN)
def test_forbidden_outcome_deviates_at_that_step(observed, probe, key, value):
    res = _judge(observed, probe, key, value)
    assert res.verdict == "deviates"
    assert res.deviating_step == _step_no(observed, probe, key)


# Outcomes the documentation allows although this kernel may not show them.
ALLOWED = [
    ("exclusive", "exclusive", 2),   # epoll_ctl(2): "one or more"
    ("exclusive", "exclusive", 4),
]


@pytest.mark.parametrize(("probe", "key", "value"), ALLOWED)
def test_allowed_outcome_matches(observed, probe, key, value):
    assert _judge(observed, probe, key, value).verdict == "matches"


def test_pipe_edge_wakeup_depends_on_kernel_version(observed):
    # fs/pipe.c: 5.5-5.13 woke readers only on an empty pipe; 5.14 restored every-write wake-ups.
    assert _judge(observed, "trigger-edge-pipe", "in.write1", [], kernel="5.10.0").verdict == "matches"
    assert _judge(observed, "trigger-edge-pipe", "in.write1", [], kernel="5.15.0").verdict == "deviates"
    assert _judge(observed, "trigger-edge-pipe", "in.write1", [], kernel="5.4.0").verdict == "deviates"


def test_missing_observation_deviates_at_first_missing_step(observed):
    obs, build = observed["rdhup"]
    fake = copy.deepcopy(obs)
    for key in ("read_eof", "after_eof", "half_open", "peer_reads", "both_shut"):
        del fake.values[key]
    res = judge("rdhup", build(fake.ctx, KERNEL), fake)
    assert res.verdict == "deviates"
    assert res.deviating_step == 4
    assert res.steps[3].observed == NOT_OBSERVED


def test_skipped_step_neither_matches_nor_deviates(observed):
    obs, build = observed["stale"]
    fake = _with(obs, "inspect.status", StepSkip("inspection unavailable"))
    fake.values["inspect.open_as"] = StepSkip("inspection unavailable")
    res = judge("stale", build(fake.ctx, KERNEL), fake)
    assert res.verdict == "matches"
    skipped = [s for s in res.steps if s.ok is None]
    assert [s.skipped for s in skipped] == ["inspection unavailable"] * 2
    assert res.to_json()["steps"][3]["skipped"] == "inspection unavailable"


def test_expect_rules():
    assert Expect("k", "a", ["EPOLLIN", "EPOLLOUT"], "s").check(["EPOLLOUT", "EPOLLIN"])
    assert not Expect("k", "a", ["EPOLLIN"], "s").check(["EPOLLIN", "EPOLLRDHUP"])
    assert not Expect("k", "a", 0, "s").check(False)
    assert not Expect("k", "a", 1, "s").check("1")
    assert Expect("k", "a", [1, 4], "s", "range").check(4)
    assert not Expect("k", "a", [1, 4], "s", "range").check(True)
    assert Expect("k", "a", "ValueError", "s", "error").check("ValueError: boom")
    assert not Expect("k", "a", "ValueError", "s", "error").check("ValueErrorX: boom")
    assert Expect("k", "a", [["EPOLLIN"], []], "s", "one_of").check([])
    assert Expect("k", "a", [6], "s", "contains").check([4, 6])
    assert not Expect("k", "a", [6], "s", "contains").check([4])
