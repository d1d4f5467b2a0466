"""Face tracking: ids persist while a face moves, new faces get new ids, lost tracks expire."""

from __future__ import annotations

from services.detector.tracker import FaceTracker, TrackIds
from shared.face.types import box_iou as iou


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == 50 / 150
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_a_moving_face_keeps_its_track_and_a_new_face_gets_a_new_one() -> None:
    tracker = FaceTracker(TrackIds())
    [first] = tracker.update([(100, 100, 80, 80)], ts=0.0)
    [same] = tracker.update([(110, 104, 80, 80)], ts=0.1)
    assert same == first
    ids = tracker.update([(120, 108, 80, 80), (400, 100, 70, 70)], ts=0.2)
    assert ids[0] == first and ids[1] != first


def test_two_faces_swapping_order_keep_their_ids() -> None:
    tracker = FaceTracker(TrackIds())
    a, b = tracker.update([(0, 0, 50, 50), (200, 0, 50, 50)], ts=0.0)
    assert tracker.update([(205, 2, 50, 50), (3, 1, 50, 50)], ts=0.1) == [b, a]


def test_fast_motion_still_matches_by_centre() -> None:
    tracker = FaceTracker(TrackIds())
    [first] = tracker.update([(100, 100, 100, 100)], ts=0.0)
    [moved] = tracker.update([(140, 100, 100, 100)], ts=0.1)  # IoU 0.43 -> matched
    [jumped] = tracker.update([(200, 105, 100, 100)], ts=0.2)  # IoU 0.25, centres close
    assert moved == first == jumped


def test_tracks_expire_after_max_age() -> None:
    tracker = FaceTracker(TrackIds(), max_age_s=1.0)
    [first] = tracker.update([(0, 0, 50, 50)], ts=0.0)
    [later] = tracker.update([(0, 0, 50, 50)], ts=2.0)
    assert later != first


def test_ids_are_unique_across_tracker_instances() -> None:
    ids = TrackIds()
    a, b = FaceTracker(ids), FaceTracker(ids)
    assert a.update([(0, 0, 5, 5)], 0.0) != b.update([(0, 0, 5, 5)], 0.0)
