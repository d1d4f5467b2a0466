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

from shared.style.catalog import NETWORKS_DIR


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
    or dlib's ResNet (150x150 dlib chips, 85%); docs/models.md. Detector and recognizer must use
    the same one (the chips differ), and so must every stored encoding."""
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


class RecognizerSettings(BaseModel):
    """Track voting and the gallery's in-memory copy."""

    min_frames: int = 3
    """Frames of a track before it is identified (or declared unknown)."""
    track_timeout_s: float = 2.0
    """A track not seen for this long has ended."""
    gallery_sync_s: float = 1.0
    publish_embeddings: bool = False
    """Also publish every frame's encodings on facestream.embeddings (biometric data: off by default)."""


class StyleSettings(BaseModel):
    """Style transfer: where the feed-forward networks live and how styled frames are published."""

    networks_dir: Path = NETWORKS_DIR
    """Trained networks (``NAME.npz`` + ``NAME.json``); the committed ones by default. A camera's
    ``style`` names one of them."""
    jpeg_quality: int = Field(85, ge=1, le=100)
    max_lag_s: float = Field(1.0, gt=0)
    """Frames older than this when the stylizer reaches them are dropped (and counted): live video
    wants the latest frames, not a growing backlog."""


LIVENESS_WEIGHTS = Path(__file__).parent / "liveness" / "weights" / "liveness_tcn.npz"


class LivenessSettings(BaseModel):
    """The liveness service and the recognizer's spoof gate (docs/liveness.md)."""

    gate: bool = True
    """Run the liveness service with the pipeline, and let the recognizer name a track only once
    it was judged live (a track judged an attack gets a ``spoof`` event instead). Off: no liveness
    check at all, every matching track is identified."""
    weights: Path = LIVENESS_WEIGHTS
    threshold: float = Field(0.5, gt=0, lt=1)
    """A track is live when the mean P(live) of its windows reaches this."""
    hop: int = Field(8, ge=1)
    """Frames between two windows of a track: a verdict every ``hop`` frames once it has a window."""
    track_timeout_s: float = 2.0
    """A track not seen for this long is forgotten."""


class ApiSettings(BaseModel):
    """The HTTP API. It refuses to start without a token: biometric data is never served openly."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: SecretStr | None = None
    """Clients send ``Authorization: Bearer <token>``."""
    max_upload_bytes: int = 40 * 1024 * 1024


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
    recognizer: RecognizerSettings = RecognizerSettings()
    style: StyleSettings = StyleSettings()
    liveness: LivenessSettings = LivenessSettings()
    api: ApiSettings = ApiSettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
