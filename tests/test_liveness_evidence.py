"""The liveness evidence policy: one lucky window never names a track, a later attack takes the
name back with an event consumers can act on, and cameras can turn liveness off."""

from __future__ import annotations

import pytest

from services.recognizer.voting import TrackVoter
from shared.bus.base import Message
from shared.liveness.evidence import EvidencePolicy, TrackEvidence, track_states
from shared.schemas import (
    Box,
    RecognitionEvent,
    RecognitionEventV2,
    SchemaError,
    Topics,
    read_event,
)
from shared.settings import LivenessSettings

BOX = Box(x=0, y=0, w=120, h=120)
POLICY = EvidencePolicy()


def test_one_lucky_window_does_not_release_a_name() -> None:
    """An attack that scores P(live) 0.999 once, then like an attack, is never live."""
    assert track_states(POLICY, [0.999]) == ["pending"]
    assert track_states(POLICY, [0.999, 0.01, 0.01]) == ["pending", "pending", "attack"]
    assert "live" not in track_states(POLICY, [0.999, 0.6, 0.4, 0.5, 0.45, 0.55])


def test_steady_live_evidence_names_a_track_after_the_minimum_windows() -> None:
    assert track_states(POLICY, [0.95, 0.95, 0.95]) == ["pending", "pending", "live"]
    strict = EvidencePolicy(min_windows=5)
    assert track_states(strict, [0.95] * 5)[-2:] == ["pending", "live"]


def test_one_window_does_not_spoof_a_live_track_but_a_run_of_attacks_does() -> None:
    """Symmetric with naming: a live face on a camera whose colours the model never saw scores
    near the threshold, and one window (however sure) must not make it an attack for good."""
    states = track_states(POLICY, [0.9] * 3 + [0.3] + [0.9] * 5 + [0.3])
    assert "attack" not in states and states[-1] == "live"
    assert track_states(POLICY, [0.9] * 3 + [0.01])[-1] == "live"  # one very sure window
    assert track_states(POLICY, [0.9] * 3 + [0.01, 0.01])[-1] == "attack"
    assert track_states(POLICY, [0.9] * 3 + [0.1] * 3)[-1] == "attack"
    assert track_states(POLICY, [0.01])[-1] == "pending"  # nor a new track


def test_an_attack_is_final() -> None:
    track = TrackEvidence(POLICY)
    for p in [0.01, 0.01]:
        track.add(p)
    assert track.state == "attack" and track.score < 0.1
    assert all(track.add(0.999) == "attack" for _ in range(20))


def test_the_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        EvidencePolicy(threshold=1.0)
    with pytest.raises(ValueError):
        EvidencePolicy(min_windows=0)


def voter(**kwargs) -> TrackVoter:
    return TrackVoter(0.36, lambda d: 1 - d, {"p1": "Ada"}.get, clock=lambda: 0.0, **kwargs)


def observe(v: TrackVoter, frames: int, camera: str = "cam", start: float = 0.0):
    return [
        e for i in range(frames) for e in v.observe(camera, 1, start + i * 0.1, BOX, 1.0, "p1", 0.2)
    ]


def test_a_later_attack_withdraws_the_name_with_an_event2_then_spoofs() -> None:
    v = voter(require_live=True)
    events = observe(v, 10)
    events += v.judged("cam", 1, live=True)
    events += observe(v, 5, start=1.0)
    events += v.judged("cam", 1, live=False)
    events += v.judged("cam", 1, live=True)  # an attack stays an attack
    events += v.expire(now=100.0)
    assert [e.type for e in events] == ["started", "identified", "withdrawn", "spoof", "ended"]
    identified, withdrawn, spoof, ended = events[1:]
    assert isinstance(withdrawn, RecognitionEventV2) and withdrawn.SCHEMA == "event/2"
    assert withdrawn.withdraws == identified.event_id and withdrawn.reason == "spoof"
    assert (withdrawn.person_id, withdrawn.person_name) == ("p1", "Ada")
    assert spoof.person_id is None and ended.person_id is None  # the name is gone
    assert type(spoof) is RecognitionEvent and spoof.SCHEMA == "event/1"


def test_the_withdrawal_is_read_by_new_consumers_and_refused_cleanly_by_old_ones() -> None:
    v = voter(require_live=True)
    observe(v, 5)
    v.judged("cam", 1, live=True)
    withdrawn, _spoof = v.judged("cam", 1, live=False)
    message = Message(Topics.EVENTS, withdrawn.to_bytes(), "cam", withdrawn.headers())
    assert read_event(message).type == "withdrawn"
    with pytest.raises(SchemaError):  # an event/1 consumer: an unsupported schema, skipped
        RecognitionEvent.from_message(message)


def test_a_camera_with_liveness_off_names_without_a_verdict() -> None:
    settings = LivenessSettings(cameras={"lobby": {"mode": "off"}})
    v = voter(
        require_live=True,
        live_required=lambda camera: settings.for_camera(camera).mode != "off",
    )
    assert [e.type for e in observe(v, 5, camera="lobby")] == ["started", "identified"]
    assert [e.type for e in observe(v, 5, camera="door")] == ["started"]


def test_per_camera_evidence_overrides_the_global_policy() -> None:
    settings = LivenessSettings(min_windows=3, cameras={"door": {"min_windows": 6}})
    assert settings.policy("door").min_windows == 6
    assert settings.policy("street").min_windows == 3


def test_with_require_blink_a_live_track_waits_for_its_first_blink() -> None:
    """A print can look live window after window; it never blinks, so it is never named."""
    track = TrackEvidence(EvidencePolicy(require_blink=True))
    assert [track.add(0.95) for _ in range(6)] == ["pending"] * 6
    track.blinked = True
    assert track.add(0.95) == "live"
    attack = TrackEvidence(EvidencePolicy(require_blink=True))
    assert [attack.add(0.01) for _ in range(2)][-1] == "attack"  # attacks need no blink


def test_a_blink_can_be_required_per_camera_and_the_detector_measures_eyes_only_then() -> None:
    settings = LivenessSettings(cameras={"door": {"require_blink": True}})
    assert settings.policy("door").require_blink and not settings.policy("street").require_blink
    assert settings.sends_eye_ratios()
    assert not LivenessSettings().sends_eye_ratios()
    everywhere = LivenessSettings(require_blink=True, cameras={"lobby": {"require_blink": False}})
    assert everywhere.policy("street").require_blink
    assert not everywhere.policy("lobby").require_blink
    assert not LivenessSettings(require_blink=True, gate=False).sends_eye_ratios()
