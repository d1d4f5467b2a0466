"""What ``facestream similarity ...`` runs: prepare, train, train-head, evaluate.

The CLI (services/cli/similarity.py) only parses arguments; each command here takes plain values so it can
be driven from the CLI, bench/ or a test alike. Every command sizes TensorFlow to the threads it
is given (one by default: this runs next to other jobs on a 2-core machine).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from training.similarity.data import DEFAULT_CACHE
from training.similarity.heads import hard_negative_pairs

log = logging.getLogger(__name__)


def prepare(shared_data: Path, cache: Path = DEFAULT_CACHE) -> None:
    """Detect, align and encode the training and View 1 images once (chips + features)."""
    from shared.face.factory import build_pipeline
    from shared.settings import get_settings
    from training.similarity.data import build_chip_cache, build_feature_cache

    settings = get_settings().model_copy(deep=True)
    settings.face.encoder = "dlib-resnet"  # the heads and the fine-tuned fc are dlib-resnet's
    pipeline = build_pipeline(settings)
    chips = build_chip_cache(shared_data, pipeline, cache)
    build_feature_cache(chips, pipeline.encoder.model, cache)


def train(
    shared_data: Path,
    mode: str,
    selector: str,
    out: Path,
    epochs: int,
    steps_per_epoch: int | None,
    learning_rate: float,
    alpha: float,
    seed: int,
    identities_per_batch: int = 16,
    images_per_identity: int = 4,
    cache: Path = DEFAULT_CACHE,
) -> Path:
    """Train an encoder with triplets; returns the folder with weights, curves and checkpoints."""
    from training.similarity.training import TrainConfig
    from training.similarity.training import train as run

    config = TrainConfig(
        mode=mode,
        selector=selector,
        out=out,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        identities_per_batch=identities_per_batch,
        images_per_identity=images_per_identity,
        alpha=alpha,
        learning_rate=learning_rate,
        seed=seed,
        cache=cache,
    )
    records = run(config, shared_data)
    last = records[-1]
    log.info(
        "done: DevTest accuracy %.4f after %d steps, %.0f CPU s",
        last.devtest_accuracy,
        last.steps,
        last.cpu_seconds,
    )
    return out


def _head_pairs(
    labels: np.ndarray, seed: int, encodings: np.ndarray | None = None, hard_negatives: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every same-identity pair of training rows, as many random different-identity pairs, and
    with ``hard_negatives`` > 0 each row's nearest rows of other identities in ``encodings``."""
    rng = np.random.default_rng(seed)
    first: list[int] = []
    second: list[int] = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        i, j = np.triu_indices(len(members), 1)
        first.extend(members[i])
        second.extend(members[j])
    positives = len(first)
    a = rng.integers(0, len(labels), 3 * positives)
    b = rng.integers(0, len(labels), 3 * positives)
    different = labels[a] != labels[b]
    a, b = a[different][:positives], b[different][:positives]
    if hard_negatives > 0 and encodings is not None:
        hard_a, hard_b = hard_negative_pairs(encodings, labels, hard_negatives)
        a, b = np.r_[a, hard_a], np.r_[b, hard_b]
    same = np.r_[np.ones(positives, bool), np.zeros(len(a), bool)]
    return np.r_[np.array(first), a], np.r_[np.array(second), b], same


def _impostor_distances(
    distance, vectors: np.ndarray, names: np.ndarray, block: int = 64
) -> np.ndarray:
    """``distance`` over every pair of rows of different people (each pair once)."""
    chunks = []
    for start in range(0, len(vectors), block):
        part = distance(vectors[start : start + block], vectors)
        different = names[start : start + block, None] != names[None, :]
        upper = np.arange(start, start + len(part))[:, None] < np.arange(len(vectors))[None, :]
        chunks.append(part[different & upper])
    return np.concatenate(chunks)


def train_head(
    shared_data: Path,
    kind: str,
    output: Path | None,
    cache: Path = DEFAULT_CACHE,
    seed: int = 0,
    l2: float = 1e-5,
    hard_negatives: int = 2,
) -> Path:
    """Fit a binary head on pretrained encodings of training pairs, calibrate it on DevTrain."""
    from datetime import date

    from shared.face.verification import Calibration
    from shared.similarity.heads import head_file
    from training.calibration import best_threshold, fit_logistic, impostor_quantiles
    from training.similarity.data import ChipCache, load_features, pair_rows, training_rows
    from training.similarity.heads import fit_head, save_head

    chips = ChipCache.load(cache)
    encodings = load_features(cache)["encodings"]
    rows, labels, _ = training_rows(chips, shared_data)
    dev = pair_rows(chips, shared_data, "DevTrain")
    # The threshold and the confidence come from DevTrain pairs, so none of their images trains
    # the head: on pairs it had learned, its P(same) would be too sure and the threshold too loose
    # for faces it has never seen.
    unseen = ~np.isin(rows, dev.used_rows)
    rows, labels = rows[unseen], labels[unseen]
    first, second, same = _head_pairs(labels, seed, encodings[rows], hard_negatives)
    head = fit_head(kind, encodings[rows[first]], encodings[rows[second]], same, l2=l2)
    ok = (dev.first >= 0) & (dev.second >= 0)
    d_dev = 1.0 - head.probability(encodings[dev.first[ok]], encodings[dev.second[ok]])
    threshold, train_accuracy = best_threshold(d_dev, dev.same[ok])
    slope, intercept = fit_logistic(d_dev, dev.same[ok])
    used = dev.used_rows
    people = np.array([chips.keys[r].split("/")[0] for r in used])
    impostors = _impostor_distances(head.distances, encodings[used], people)
    calibration = Calibration(
        threshold=threshold,
        slope=slope,
        intercept=intercept,
        model=f"dlib_face_recognition_resnet_model_v1 + binary-head-{kind}",
        source=f"head fitted on {int(same.sum())} same + {int((~same).sum())} different pairs of "
        f"{len(np.unique(labels))} LFW training identities (no DevTest person, no DevTrain image); "
        f"threshold and confidence on "
        f"{int(ok.sum())} DevTrain pairs, {len(impostors):,} impostor pairs among DevTrain images; "
        f"facestream similarity train-head --kind {kind} --l2 {l2:g} --hard-negatives {hard_negatives}",
        train_accuracy=train_accuracy,
        impostor_quantiles=impostor_quantiles(impostors),
    )
    path = output or head_file(kind)
    save_head(
        path,
        head,
        calibration,
        {
            "trained": date.today().isoformat(),
            "seed": seed,
            "l2": l2,
            "hard_negatives": hard_negatives,
        },
    )
    log.info("%s head: DevTrain accuracy %.4f at distance %.4f", kind, train_accuracy, threshold)
    return path


def _pixels(chips, rows: np.ndarray) -> np.ndarray:
    """Raw-pixel vectors: the scratch encoder's 64x64 input in grey levels (eigenfaces' classic
    input; colour adds nothing to either baseline), in [0, 1]."""
    from training.similarity.scratch_encoder import scratch_chips

    luma = np.array([0.299, 0.587, 0.114], np.float32)
    grey = scratch_chips(np.asarray(chips.chips[rows])).astype(np.float32) @ luma
    return grey.reshape(len(rows), -1) / np.float32(255)


def _model_vectors(spec: str, chips, features: dict, train_rows: np.ndarray, rows: np.ndarray):
    """(label, distance function over row vectors, vectors of ``rows``) for one model spec."""
    from shared.face.verification import squared_distances

    name, _, argument = spec.partition("=")
    if name == "pixels":
        return "raw pixels, L2 (64x64 grey)", squared_distances, _pixels(chips, rows)
    if name == "pca":
        training = _pixels(chips, train_rows)
        mean = training.mean(axis=0)
        _, _, components = np.linalg.svd(training - mean, full_matrices=False)
        basis = components[:128].T
        return "eigenfaces (PCA 128), L2", squared_distances, (_pixels(chips, rows) - mean) @ basis
    if name == "pretrained":
        return "dlib ResNet pretrained, L2", squared_distances, features["encodings"][rows]
    if name == "finetuned":
        from training.similarity.finetuned import FINETUNED_FILE, load_fc_kernel

        kernel = load_fc_kernel(Path(argument) if argument else FINETUNED_FILE)
        return (
            "dlib ResNet fine-tuned fc, L2",
            squared_distances,
            features["features"][rows] @ kernel,
        )
    if name in ("head-l1", "head-chi2"):
        from shared.similarity.heads import load_head

        verifier = load_head(name.removeprefix("head-"), Path(argument) if argument else None)
        return (
            f"pretrained + binary head {name[5:]}",
            verifier.distances,
            features["encodings"][rows],
        )
    if name == "scratch":
        return (
            f"scratch CNN ({Path(argument).parent.name}), L2",
            squared_distances,
            _scratch(argument, chips, rows),
        )
    raise ValueError(f"unknown model {spec!r}")


def _scratch(weights: str, chips, rows: np.ndarray) -> np.ndarray:
    from training.similarity.scratch_encoder import build_scratch_encoder, scratch_chips

    model = build_scratch_encoder()
    model.load_weights(weights)
    images = scratch_chips(np.asarray(chips.chips[rows])).astype(np.float32) / 255.0
    return model.predict(images, batch_size=256, verbose=0)


def _pair_distances(pairs, distance, vectors: np.ndarray, position: dict[int, int]) -> np.ndarray:
    ok = (pairs.first >= 0) & (pairs.second >= 0)
    out = np.full(len(pairs.same), np.inf)
    a = vectors[[position[r] for r in pairs.first[ok]]]
    b = vectors[[position[r] for r in pairs.second[ok]]]
    out[ok] = [float(distance(x, y)[0, 0]) for x, y in zip(a, b, strict=True)]
    return out


def evaluate(
    shared_data: Path, models: list[str], report: Path, roc: Path, cache: Path = DEFAULT_CACHE
) -> list:
    """Every model on DevTest: threshold from DevTrain; a JSON report, a Markdown table, one ROC PNG."""
    from training.similarity.data import ChipCache, load_features, pair_rows, training_rows
    from training.similarity.evaluation import evaluate as measure
    from training.similarity.evaluation import plot_rocs

    chips = ChipCache.load(cache)
    features = load_features(cache)
    train_rows, _, _ = training_rows(chips, shared_data)
    dev, test = pair_rows(chips, shared_data, "DevTrain"), pair_rows(chips, shared_data, "DevTest")
    rows = np.union1d(dev.used_rows, test.used_rows)
    position = {int(r): i for i, r in enumerate(rows)}
    results, curves = [], {}
    for spec in models:
        label, distance, vectors = _model_vectors(spec, chips, features, train_rows, rows)
        result, curve = measure(
            label,
            _pair_distances(dev, distance, vectors, position),
            dev.same,
            _pair_distances(test, distance, vectors, position),
            test.same,
        )
        results.append({"spec": spec, **result.as_dict()})
        curves[f"{label}: AUC {result.auc:.4f}"] = curve
        log.info("%s: DevTest accuracy %.4f, AUC %.4f", label, result.test_accuracy, result.auc)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(results, indent=2) + "\n")
    plot_rocs(curves, roc, "LFW View 1 DevTest (threshold chosen on DevTrain)")
    print(markdown_table(results))
    return results


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| model | DevTest accuracy | AUC | TAR @ FAR=1e-3 | threshold (from DevTrain) | DevTrain accuracy |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {100 * r['test_accuracy']:.2f}% | {r['auc']:.4f} | {100 * r['tar_at_far_1e3']:.1f}% "
        f"| {r['threshold']:.4f} | {100 * r['train_accuracy']:.2f}% |"
        for r in results
    ]
    return "\n".join(lines)


def curves(runs: list[Path], output: Path) -> None:
    """One PNG with the curves of every run folder given (named by folder)."""
    from training.similarity.evaluation import plot_curves

    plot_curves({run.name: json.loads((run / "curves.json").read_text()) for run in runs}, output)
