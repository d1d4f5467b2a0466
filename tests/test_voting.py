"""Track voting: a handful of events per track, decided by weighted majority."""

from __future__ import annotations

from services.recognizer.voting import TrackVoter, face_weight
from shared.schemas import Box

BOX = Box(x=0, y=0, w=120, h=120)


class Clock:
    """Wall time under the test's control; frames are processed as they are captured."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


def voter(**kwargs) -> TrackVoter:
    return TrackVoter(
        0.36, lambda d: 1 - d, {"p1": "Ada", "p2": "Bob"}.get, clock=Clock(), **kwargs
    )


def observe_many(v: TrackVoter, matches, track_id=1, start=0.0, camera="cam"):
    events = []
    for i, (person, distance) in enumerate(matches):
        v.clock.now = start + i * 0.1
        events += v.observe(camera, track_id, start + i * 0.1, BOX, 1.0, person, distance)
    return events


def test_a_recognised_track_gives_started_identified_ended() -> None:
    v = voter()
    events = observe_many(v, [("p1", 0.2)] * 30)
    events += v.expire(now=100.0)
    assert [e.type for e in events] == ["started", "identified", "ended"]
    identified = events[1]
    assert (identified.person_id, identified.person_name) == ("p1", "Ada")
    assert identified.distance == 0.2 and identified.threshold == 0.36
    assert identified.frames == 3  # decided at min_frames, not later
    assert events[2].frames == 30 and events[2].person_name == "Ada"


def test_matches_beyond_tau_vote_unknown() -> None:
    v = voter()
    events = observe_many(v, [("p1", 0.5)] * 10)
    assert [e.type for e in events] == ["started", "unknown"]
    assert events[1].person_id is None


def test_a_few_wrong_frames_do_not_flip_the_identity() -> None:
    v = voter()
    matches = [("p1", 0.2)] * 5 + [("p2", 0.3)] * 2 + [("p1", 0.25)] * 5 + [(None, None)] * 2
    events = observe_many(v, matches)
    assert [e.type for e in events] == ["started", "identified"]


def test_a_real_change_of_majority_re_identifies_once() -> None:
    v = voter()
    events = observe_many(v, [(None, None)] * 3 + [("p2", 0.2)] * 20)
    assert [e.type for e in events] == ["started", "unknown", "identified"]
    assert events[-1].person_name == "Bob"


def test_spoof_tracks_are_never_identified() -> None:
    v = voter()
    events = observe_many(v, [("p1", 0.2)] * 2)
    events += v.judged("cam", 1, live=False)
    events += observe_many(v, [("p1", 0.2)] * 10, start=1.0)
    events += v.judged("cam", 1, live=True)
    assert [e.type for e in events] == ["started", "spoof"]


def test_with_the_gate_a_track_is_named_only_once_judged_live() -> None:
    v = voter(require_live=True)
    events = observe_many(v, [("p1", 0.2)] * 10)
    assert [e.type for e in events] == ["started"]
    events = v.judged("cam", 1, live=True)
    assert [(e.type, e.person_name) for e in events] == [("identified", "Ada")]


def test_with_the_gate_unknown_is_not_held() -> None:
    v = voter(require_live=True)
    assert [e.type for e in observe_many(v, [(None, None)] * 3)] == ["started", "unknown"]


def test_a_verdict_that_arrives_before_the_track_is_applied_when_it_appears() -> None:
    v = voter(require_live=True)
    assert v.judged("cam", 1, live=False) == []
    events = observe_many(v, [("p1", 0.2)] * 10)
    assert [e.type for e in events] == ["started", "spoof"]
    w = voter(require_live=True)
    w.judged("cam", 1, live=True)
    assert [e.type for e in observe_many(w, [("p1", 0.2)] * 3)] == ["started", "identified"]


def test_a_stall_does_not_end_tracks_but_a_silent_camera_does() -> None:
    v = voter(track_timeout_s=2.0, silence_timeout_s=10.0)
    observe_many(v, [("p1", 0.2)] * 3)
    assert v.expire(now=1.0) == []
    assert v.expire(now=8.0) == []  # 8 s without frames (a broker restart): still open
    v.clock.now = 8.0
    v.observe("cam", 1, 0.3, BOX, 1.0, "p1", 0.2)  # the stream resumes where it was
    assert v.expire(now=8.0) == []
    assert [e.type for e in v.expire(now=18.5)] == ["ended"]  # the camera really stopped


def test_a_capture_time_ahead_of_the_clock_does_not_end_the_cameras_tracks() -> None:
    v = voter(track_timeout_s=2.0)
    observe_many(v, [("p1", 0.2)] * 3)  # clock at 0.2
    v.observe("cam", 2, 4.0, BOX, 1.0, None, None)  # 3.8 s ahead (inside the skew window)
    assert v.expire(now=0.2) == []


def test_an_identification_waits_for_the_persons_name() -> None:
    names = {}
    v = TrackVoter(0.36, lambda d: 1 - d, names.get, clock=Clock())
    events = observe_many(v, [("p1", 0.2)] * 5)
    assert [e.type for e in events] == ["started"]  # the store is down: no name, no decision
    names["p1"] = "Ada"
    events = observe_many(v, [("p1", 0.2)], start=1.0)
    assert [(e.type, e.person_name) for e in events] == [("identified", "Ada")]


def test_a_backlog_does_not_end_tracks_that_are_still_in_the_stream() -> None:
    v = voter(track_timeout_s=2.0)
    for i in range(50):  # frames captured 0.1 s apart, all processed 10 s late
        v.clock.now = 10.0 + i * 0.1
        v.observe("cam", 1, i * 0.1, BOX, 1.0, "p1", 0.2)
        assert v.expire(now=v.clock.now) == []


def test_a_track_that_leaves_while_the_camera_goes_on_ends_by_stream_time() -> None:
    v = voter(track_timeout_s=2.0)
    observe_many(v, [("p1", 0.2)] * 3, track_id=1)
    observe_many(v, [(None, None)] * 30, track_id=2, start=0.3)  # another face, 3 s more
    assert [(e.type, e.track_id) for e in v.expire(now=v.clock.now)] == [("ended", 1)]


def test_small_or_uncertain_faces_weigh_less() -> None:
    assert face_weight(Box(x=0, y=0, w=112, h=112), 1.0) == 1.0
    assert face_weight(Box(x=0, y=0, w=56, h=56), 1.0) == 0.5
    assert face_weight(Box(x=0, y=0, w=200, h=200), 0.5) == 0.5


def test_a_flicker_of_fewer_than_confirm_frames_makes_no_events() -> None:
    v = voter(confirm_frames=3)
    events = observe_many(v, [(None, None)] * 2)
    events += v.expire(1e12)
    assert events == []
    events = observe_many(v, [(None, None)] * 3, start=100.0)
    assert [e.type for e in events] == ["started", "unknown"]
