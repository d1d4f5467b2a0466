"""``facestream enroll|verify|identify|people``: the gallery from the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from services.cli.common import CliError, identity, progress_bar, read_bytes
from shared.gallery.base import Gallery, Person, PersonNotFoundError, validate_name
from shared.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    enroll = commands.add_parser("enroll", help="enroll a person from one photo (or a folder tree)")
    enroll.add_argument("name", nargs="?", help="the person's name")
    enroll.add_argument("image", help="the photo; with --folder, a folder of NAME/photos")
    enroll.add_argument(
        "--face", type=int, default=None, help="which face, if the photo has several"
    )
    enroll.add_argument("--folder", action="store_true", help="bulk: IMAGE is a folder NAME/*.jpg")
    enroll.set_defaults(handler=cmd_enroll)

    verify = commands.add_parser("verify", help="1:1: two photos, or a photo against --person")
    verify.add_argument("image")
    verify.add_argument("other", nargs="?")
    verify.add_argument("--person", help="name or id of the claimed identity")
    verify.set_defaults(handler=cmd_verify)

    identify = commands.add_parser("identify", help="1:K: who is in this photo")
    identify.add_argument("image")
    identify.add_argument("--top-k", type=int, default=1)
    identify.add_argument("--json", action="store_true")
    identify.set_defaults(handler=cmd_identify)

    people = commands.add_parser("people", help="enrolled people")
    actions = people.add_subparsers(dest="action", required=True)
    actions.add_parser("list")
    actions.add_parser(
        "reencode",
        help="rebuild every encoding from its stored photo with the configured encoder "
        "(after switching FACESTREAM_FACE__ENCODER; resumable)",
    )
    actions.add_parser("delete", help="delete a person and all their data").add_argument("name")
    people.set_defaults(handler=cmd_people)


def cmd_enroll(args: argparse.Namespace, settings: Settings) -> None:
    service = identity(settings)
    if args.folder:
        enrolled, skipped = service.enroll_folder(Path(args.image))
        for photo, why in skipped:
            print(f"skipped {photo}: {why}")
        print(f"enrolled {len(enrolled)} photo(s) of {len({e.person.id for e in enrolled})} people")
        return
    if not args.name:
        raise CliError("give NAME IMAGE, or --folder DIR")
    try:
        validate_name(args.name)
    except ValueError as error:
        raise CliError(str(error)) from None
    one = service.enroll(args.name, read_bytes(args.image), args.face)
    print(f"enrolled {one.person.name} ({one.person.id}), {len(one.person.encoding_ids)} photo(s)")


def cmd_verify(args: argparse.Namespace, settings: Settings) -> None:
    service = identity(settings)
    if args.person:
        claimed = _person(lambda: service.resolve(args.person), args.person)
        verdict = service.verify_person(read_bytes(args.image), claimed.id)
    elif args.other:
        verdict = service.verify(read_bytes(args.image), read_bytes(args.other))
    else:
        raise CliError("give a second image or --person NAME")
    answer = "same person" if verdict.same else "different people"
    print(
        f"{answer}: distance {verdict.distance:.4f} (threshold {verdict.threshold:.4f}), "
        f"confidence {verdict.confidence:.3f}"
    )


def cmd_identify(args: argparse.Namespace, settings: Settings) -> None:
    faces = identity(settings).identify(read_bytes(args.image), top_k=args.top_k)
    if args.json:
        print(json.dumps([asdict(f) for f in faces], indent=2))
        return
    if not faces:
        print("no face found")
    for face in faces:
        b = face.box
        who = face.name or "unknown"
        distance = f"{face.distance:.4f}" if face.distance is not None else "-"
        print(f"{b.w:.0f}x{b.h:.0f} at ({b.x:.0f},{b.y:.0f}): {who} (distance {distance})")


def cmd_people(args: argparse.Namespace, settings: Settings) -> None:
    from shared.gallery.factory import create_gallery

    gallery = create_gallery(settings)
    if args.action == "list":
        for person in gallery.people():
            print(f"{person.id}\t{person.name}\t{len(person.encoding_ids)} photo(s)")
    elif args.action == "reencode":
        _reencode(gallery, settings)
    else:
        person = gallery.find(args.name) or _person(lambda: gallery.person(args.name), args.name)
        gallery.delete_person(person.id)
        print(f"deleted {person.name}: every encoding and photo")


def _person(lookup: Callable[[], Person], name_or_id: str) -> Person:
    try:
        return lookup()
    except PersonNotFoundError:
        raise CliError(f"no person named or with id {name_or_id!r}") from None


def _reencode(gallery: Gallery, settings: Settings) -> None:
    """Rebuild every encoding from its stored photo with the configured encoder (resumable)."""
    from shared.face.factory import build_pipeline
    from shared.face.reencode import reencode_gallery

    pipeline = build_pipeline(settings)
    print(f"re-encoding the gallery with {pipeline.encoder.name}", flush=True)
    done = 0
    try:
        with progress_bar() as bar:

            def progress(count: int, total: int, name: str) -> None:
                nonlocal done
                done = count
                bar(count, name[:40], total=total)

            report = reencode_gallery(gallery, pipeline, progress)
    except KeyboardInterrupt:
        raise CliError(
            f"interrupted after {done} photo(s); every photo is either re-encoded or as it "
            "was: run `facestream people reencode` again to finish"
        ) from None
    print(
        f"{report.people} people, {report.photos} photo(s): {report.reencoded} re-encoded, "
        f"{report.already} already {report.encoder}, {len(report.kept)} kept as they were"
    )
    if report.kept:
        for kept in report.kept:
            print(f"  kept {kept.person} photo {kept.encoding_id} ({kept.encoder}): {kept.why}")
        raise CliError(
            f"{len(report.kept)} photo(s) could not be re-encoded and keep their "
            f"{'/'.join(sorted({k.encoder for k in report.kept}))} encoding: recognizers with "
            f"{report.encoder} refuse the gallery until they are deleted or re-enrolled"
        )
