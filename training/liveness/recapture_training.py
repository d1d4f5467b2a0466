"""Training and measuring the recapture model, leave one source group out.

    nice -n 10 .venv/bin/facestream liveness-model pixels extract     # tracks, cached once
    nice -n 10 .venv/bin/facestream liveness-model recapture loso [--report FILE] [--ablate]
    nice -n 10 .venv/bin/facestream liveness-model recapture train [--out PATH]
    nice -n 10 .venv/bin/facestream liveness-model recapture evaluate [--report FILE]

(``--cues NAME ...``, ``--real-only`` and ``--moire`` choose a design; the committed one:
``--l2 30 --cues chroma_spread --real-only --moire``.)

Every source of ``dataset.SOURCES`` except the real evaluation pair belongs to a **group**: a
recording and everything made from it (a person's live video, their real replay, the synthetic
replays of it), or a set of LFW people. ``loso`` scores each group's windows with a model
trained on the other groups only, and reports the out-of-fold error rates per source at the
threshold that gives BPCER 5% on the out-of-fold live windows (every live group weighted
equally). ``train`` fits on every group and calibrates on those out-of-fold scores.
``evaluate`` measures the real pair in ``liveness/`` and the stills, which nothing above reads.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass

import numpy as np

from training.liveness.metrics import LIVE

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STRIDE = 4
GROUPS = {
    "hamilton": ["hamilton", "fullview_hamilton", "phone_hamilton"],
    "person2": ["live_person2", "replay_person2"],
    "apfol": ["live_apfol", "phone_apfol", "fullview_apfol"],
    "sivakumar": ["live_sivakumar", "fullview_sivakumar", "phone_sivakumar"],
    "wolfhuo": ["live_wolfhuo", "monitor_wolfhuo"],
    "krzysiek": ["live_krzysiek", "fullview_krzysiek"],
    "crowd": ["crowd_a", "crowd_b", "fullview_crowd_b"],
    "ashish": ["monitor_ashish"],
    "nurcan": ["phone_nurcan"],
    "lfw_a": ["prints_a", "textured_prints_a", "screens_a"],
    "lfw_b": ["prints_b_dev", "screens_b_dev", "prints_b_test", "screens_b_test"],
}
"""A recording and everything made from it stay together on one side of every split."""
REAL_RECAPTURES = {"replay_person2", "monitor_wolfhuo", "phone_apfol", "monitor_ashish"}
REAL_RECAPTURES |= {"phone_nurcan", "eval_replay"}


def attack_type(source: str, label: str) -> str:
    """The error-rate type of a window: ``print``, ``screen`` (synthetic) or ``real-recapture``."""
    if label == LIVE:
        return LIVE
    return "real-recapture" if source in REAL_RECAPTURES else label


@dataclass
class Windows:
    features: np.ndarray
    """(N, 2 * len(CUES) + 1): every window feature; a design reads its ``Design.columns``."""
    labels: list[str]
    sources: list[str]

    @property
    def live(self) -> np.ndarray:
        return np.array([label == LIVE for label in self.labels])

    @property
    def types(self) -> list[str]:
        return [attack_type(s, lab) for s, lab in zip(self.sources, self.labels, strict=True)]

    def subset(self, keep: np.ndarray) -> Windows:
        idx = np.flatnonzero(keep)
        return Windows(
            self.features[idx], [self.labels[i] for i in idx], [self.sources[i] for i in idx]
        )


def track_windows(tracks, motion_model, stride: int = STRIDE, hop_ends: bool = False) -> Windows:
    """Window features of every track (``hop_ends``: only the windows the service judges)."""
    from shared.liveness.model import WINDOW
    from shared.liveness.recapture_model import window_features

    motion, cues, labels, sources = [], [], [], []
    for track in tracks:
        features = track.motion()
        for s in range(0, len(track) - WINDOW + 1, 8 if hop_ends else stride):
            motion.append(features[s : s + WINDOW])
            cues.append(track.cues[s : s + WINDOW])
            labels.append(track.label)
            sources.append(track.source)
    if not motion:
        return Windows(np.empty((0, 0)), [], [])
    a, b = motion_model.calibration
    log_odds = a * motion_model.logits(np.stack(motion)) + b
    return Windows(window_features(np.stack(cues), log_odds), labels, sources)


def sample_weights(windows: Windows) -> np.ndarray:
    """Both classes weigh the same, and every source the same within its class."""
    sources = np.array(windows.sources)
    live = windows.live
    weight = np.zeros(len(sources))
    for cls in (True, False):
        names = sorted(set(sources[live == cls]))
        for name in names:
            member = (sources == name) & (live == cls)
            weight[member] = 1.0 / (len(names) * member.sum())
    return weight * len(weight) / weight.sum()


@dataclass(frozen=True)
class Design:
    """What a recapture model is fitted on: feature columns (None: all), the L2 weight, and
    whether the one-sided moire rule is on."""

    columns: list[int] | None
    l2: float
    moire: bool = False


def fit(windows: Windows, design: Design, card: dict | None = None):
    from shared.liveness.recapture_model import RecaptureModel

    card = {**(card or {}), "columns": design.columns}
    return RecaptureModel.fit(
        windows.features, windows.live, sample_weights(windows), design.l2, card, design.moire
    )


def group_of(source: str) -> str:
    return next(g for g, members in GROUPS.items() if source in members)


def fold_models(windows: Windows, design: Design) -> dict:
    """One model per source group present, each trained without that group."""
    groups = np.array([group_of(s) for s in windows.sources])
    return {g: fit(windows.subset(groups != g), design) for g in GROUPS if (groups == g).any()}


def out_of_fold(
    windows: Windows, design: Design, models: dict | None = None, linear: bool = False
) -> np.ndarray:
    """Each window's log-odds from a model trained without its source group (``models``: the
    ``fold_models`` already fitted on these windows; ``linear``: the logistic's alone, without
    the moire rule, which calibration must not scale)."""
    models = models or fold_models(windows, design)
    groups = np.array([group_of(s) for s in windows.sources])
    scores = np.zeros(len(groups))
    for group, model in models.items():
        held = groups == group
        score = model.linear_logits if linear else model.logits
        scores[held] = score(windows.features[held])
    return scores


def calibration(scores: np.ndarray, windows: Windows) -> tuple[float, float]:
    """(a, b): a Platt slope on out-of-fold logistic log-odds, the intercept placing P = 0.5
    at out-of-fold BPCER 5%."""
    from training.calibration import fit_logistic

    scores = np.clip(scores, -10, 10)
    a, _ = fit_logistic(scores, windows.live, balanced=True)
    return a, -a * live_threshold(scores, windows)


def live_threshold(scores: np.ndarray, windows: Windows, bpcer: float = 0.05) -> float:
    """The score at which ``bpcer`` of the live windows are rejected, every live source
    weighted equally (a long video must not set it alone)."""
    live = windows.live
    weight = sample_weights(windows)[live]
    order = np.argsort(scores[live])
    cumulative = np.cumsum(weight[order]) / weight.sum()
    return float(scores[live][order][np.searchsorted(cumulative, bpcer)])


def rates(windows: Windows, judged_live: np.ndarray) -> dict:
    """APCER per attack type, BPCER, and the share judged right per source."""
    types = np.array(windows.types)
    sources = np.array(windows.sources)
    report: dict = {"apcer": {}, "per_source": {}}
    for kind in sorted(set(types) - {LIVE}):
        report["apcer"][kind] = float(judged_live[types == kind].mean())
    if (types == LIVE).any():
        report["bpcer"] = float((~judged_live[types == LIVE]).mean())
    if report["apcer"] and "bpcer" in report:
        report["acer"] = (max(report["apcer"].values()) + report["bpcer"]) / 2
    for name in sorted(set(sources)):
        member = sources == name
        right = judged_live[member] == (types[member] == LIVE)
        report["per_source"][name] = {"windows": int(member.sum()), "right": float(right.mean())}
    return report


def ranking(scores: np.ndarray, windows: Windows) -> dict:
    """Per attack type, the share of (live, attack) window pairs ranked right (the AUC): how
    separable the scores are at any threshold (0.5: no better than chance)."""
    types = np.array(windows.types)
    live = scores[types == LIVE]
    return {
        kind: float((live[:, None] > scores[types == kind][None, :]).mean())
        for kind in sorted(set(types) - {LIVE})
    }


def loso(windows: Windows, design: Design) -> dict:
    scores = out_of_fold(windows, design)
    at = live_threshold(scores, windows)
    return {
        "l2": design.l2,
        "moire": design.moire,
        "threshold": at,
        "auc": ranking(scores, windows),
        **rates(windows, scores >= at),
    }


def source_pair_auc(windows: Windows, keep: np.ndarray, column: int) -> float:
    """One feature's AUC, live against attack, averaged over every (live source, attack
    source) pair among ``keep``: each recording counts once, however long."""
    sources, live = np.array(windows.sources), windows.live
    aucs = []
    for live_source in sorted(set(sources[keep & live])):
        a = windows.features[sources == live_source, column]
        for attack_source in sorted(set(sources[keep & ~live])):
            b = windows.features[sources == attack_source, column]
            aucs.append((a[:, None] > b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean())
    return float(np.mean(aucs))


def nested_pick(windows: Windows, l2: float) -> dict:
    """The committed design's procedure, honestly: inside every fold, the one cue mean whose
    source-pair AUC is farthest from 0.5 on the other groups, fitted with the motion verdict;
    the held-out group scored with it. ``windows``: every column (``window_features``)."""
    from shared.liveness.recapture import CUES

    groups = np.array([group_of(s) for s in windows.sources])
    scores, picks = np.zeros(len(groups)), {}
    for group in sorted(set(groups)):
        held = groups == group
        best = max(range(len(CUES)), key=lambda j: abs(source_pair_auc(windows, ~held, j) - 0.5))
        picks[group] = CUES[best]
        design = Design([best, 2 * len(CUES)], l2)
        scores[held] = fit(windows.subset(~held), design).logits(windows.features[held])
    at = live_threshold(scores, windows)
    return {"picks": picks, "auc": ranking(scores, windows), **rates(windows, scores >= at)}


def out_of_fold_tracks(tracks, motion_model, design: Design, real_only: bool, policy) -> dict:
    """Per source, the tracks named and spoofed under the evidence policy (the service's hop),
    each track judged by a model fitted without its source group and calibrated like the
    committed one (on every out-of-fold window); beside them, the motion model's own verdicts.
    What a user sees (a name, a spoof) rather than windows."""
    from shared.liveness.evidence import track_states

    windows = select(track_windows(tracks, motion_model), real_only)
    models = fold_models(windows, design)
    calibrated = calibration(out_of_fold(windows, design, models, linear=True), windows)
    for model in models.values():
        model.calibration = calibrated  # as ``calibrate`` sets the committed model's
    report: dict = {}
    for track in tracks:
        every = track_windows([track], motion_model, hop_ends=True)
        if track.source not in windows.sources or not every.labels:
            continue
        model = models[group_of(track.source)]
        judged = model.probability_live(every.features)
        motion = 1 / (1 + np.exp(-every.features[:, -1]))  # the motion model's calibrated log-odds
        row = report.setdefault(track.source, {"label": track.label, "tracks": 0})
        for name, probabilities in (("", judged), ("motion_", motion)):
            states = track_states(policy, probabilities.tolist())
            row[f"{name}named"] = row.get(f"{name}named", 0) + ("live" in states)
            row[f"{name}spoof"] = row.get(f"{name}spoof", 0) + ("attack" in states)
        row["tracks"] += 1
    return report


def load_windows(splits: set[str], motion_model) -> Windows:
    from shared.settings import get_settings
    from training.liveness.pixel_training import load_split

    tracks = load_split(splits, get_settings().shared_data)
    return track_windows(tracks, motion_model)


def calibrate(model, windows: Windows, design: Design) -> None:
    """``calibration`` of the model on every window's out-of-fold logistic log-odds."""
    a, b = calibration(out_of_fold(windows, design, linear=True), windows)
    model.calibration = (a, b)
    model.card["calibration"] = {"a": a, "b": b, "on": "out-of-fold windows, BPCER 5%"}


def _track_outcomes(model, motion_model, tracks, policy) -> list[dict]:
    from shared.liveness.evidence import track_states

    outcomes = []
    for track in tracks:
        windows = track_windows([track], motion_model, hop_ends=True)
        states = track_states(policy, model.probability_live(windows.features).tolist())
        outcomes.append(
            {
                "source": track.source,
                "label": track.label,
                "windows": len(states),
                "ever_named": "live" in states,
                "ever_spoof": "attack" in states,
            }
        )
    return outcomes


def evaluate(model, motion_model, policy, offsets: int = 10) -> dict:
    """The real pair and the stills moved by hand, per window at P = 0.5 and per track."""
    from shared.settings import get_settings
    from training.liveness.dataset import SOURCES, STILLS, source_tracks

    data = get_settings().shared_data
    report: dict = {}
    parts = {
        "real pair (liveness/)": [s for s in SOURCES if s.split == "eval"],
        "stills moved by hand": STILLS,
        "hamilton + crowd (per track)": [
            s for s in SOURCES if s.name in ("hamilton", "crowd_a", "crowd_b")
        ],
        "synthetic test part": [s for s in SOURCES if s.split == "test"],
    }
    trained_on = set(model.card.get("sources", []))
    for part, sources in parts.items():
        tracks = [t for s in sources for t in source_tracks(s, data, None)]
        windows = track_windows(tracks, motion_model)
        report[part] = rates(windows, model.probability_live(windows.features) >= 0.5)
        report[part]["trained_on"] = sorted(trained_on & {s.name for s in sources})
        report[part]["tracks"] = _track_outcomes(model, motion_model, tracks, policy)
    replay = source_tracks(next(s for s in SOURCES if s.name == "eval_replay"), data, None)
    retries = []
    for track in replay:
        for k in range(offsets):
            start = k * len(track) // (offsets + 2)
            retries += _track_outcomes(model, motion_model, [track.from_frame(start)], policy)
    report["replay at offsets"] = retries
    return report


def evaluate_command(liveness, settings) -> dict:
    """``facestream liveness-model evaluate`` for a recapture model: its card's out-of-fold
    figures (every group, the synthetic test part among them, scored by a model that never saw
    it), then the real pair and the stills, which nothing trained or calibrated on."""
    loso_figures = liveness.recapture.card.get("loso", {})
    print("out of fold (leave one source group out), at BPCER 5% on out-of-fold live windows:")
    print(json.dumps({k: v for k, v in loso_figures.items() if k != "per_source"}, default=float))
    for name, entry in loso_figures.get("per_source", {}).items():
        print(f"   {name}: {entry['right']:.1%} of {entry['windows']} windows right")
    report = evaluate(
        liveness.recapture, liveness.motion_model, settings.liveness.policy("evaluate")
    )
    print(json.dumps(report, indent=1, default=float))
    return {"out_of_fold": loso_figures, **report}


def columns_of(cues: list[str] | None) -> list[int] | None:
    """Feature columns for a design on some cues: their window means and the motion verdict."""
    from shared.liveness.recapture import CUES

    if not cues:
        return None
    return [CUES.index(name) for name in cues] + [2 * len(CUES)]


def select(windows: Windows, real_only: bool) -> Windows:
    """``real_only``: live and real recaptures only (synthetic attacks left out, for cues whose
    synthetic direction is wrong: docs/liveness.md)."""
    if not real_only:
        return windows
    return windows.subset(np.array([t in (LIVE, "real-recapture") for t in windows.types]))


def run(args: argparse.Namespace, settings) -> None:
    """One step on the cached tracks (``facestream liveness-model pixels extract`` makes them)."""
    from shared.liveness.model import load_model
    from shared.liveness.recapture_model import RECAPTURE_WEIGHTS, load_recapture_model

    started = time.monotonic()
    motion_model = load_model()
    if args.step == "evaluate":
        model = load_recapture_model(args.out or RECAPTURE_WEIGHTS)
        report = evaluate(model, motion_model, settings.liveness.policy("evaluate"))
    else:
        columns = columns_of(args.cues)
        designs = [Design(columns, l2, args.moire) for l2 in args.l2]
        windows = select(load_windows({"train", "dev", "test"}, motion_model), args.real_only)
        if args.step == "loso":
            report = {f"l2 {d.l2}": loso(windows, d) for d in designs}
            if args.nested:
                report["nested pick of one cue"] = nested_pick(windows, args.l2[0])
            if args.tracks:
                from training.liveness.pixel_training import load_split

                tracks = load_split({"train", "dev", "test"}, settings.shared_data)
                report["tracks out of fold"] = out_of_fold_tracks(
                    tracks,
                    motion_model,
                    designs[0],
                    args.real_only,
                    settings.liveness.policy("loso"),
                )
            if args.ablate:
                motion = windows.features.shape[1] - 1
                cues = [c for c in columns or range(motion) if c != motion]
                for name, kept in (("cues only", cues), ("motion only", [motion])):
                    report[name] = loso(windows, Design(kept, args.l2[0], args.moire))
        else:
            design = designs[0]
            card = {"l2": design.l2, "sources": sorted(set(windows.sources))}
            card["design"] = {
                "cues": args.cues or "all",
                "real_only": args.real_only,
                "moire": args.moire,
            }
            model = fit(windows, design, card)
            calibrate(model, windows, design)
            model.card["loso"] = loso(windows, design)
            model.card["motion_sha256"] = motion_model.card.get("sha256")
            model.card["command"] = (
                f"nice -n 10 .venv/bin/facestream liveness-model recapture train --l2 {design.l2}"
                + (f" --cues {' '.join(args.cues)}" if args.cues else "")
                + (" --real-only" if args.real_only else "")
                + (" --moire" if args.moire else "")
            )
            model.card["windows"] = len(windows.labels)
            model.save(args.out or RECAPTURE_WEIGHTS)
            report = model.card
    report_text = json.dumps(report, indent=1, default=float)
    print(report_text, f"\n{time.monotonic() - started:.0f} s", flush=True)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(report_text + "\n")
