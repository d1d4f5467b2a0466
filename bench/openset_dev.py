"""The DEV open set: where encoder and calibration designs are chosen before bench.openset's test.

    nice -n 10 python -m bench.openset_dev [--encoders sface,sface-flip] [--detector mtcnn]

Why a separate protocol: bench.openset is the reported test (reported once per design, nothing
chosen on it). Its people are drawn from all of LFW outside View 1 DevTest, so a dev protocol on
other LFW people cannot be built at the same size (the people left over have one photo each). The
dev protocol therefore works on View 1 **DevTrain's** people, the split the project already
tunes on, and keeps its calibration blind to them:

- calibration: ``bench.lfw.calibrate_encoder`` with DevTrain's people excluded from the impostor
  pairs (tau and Platt still come from the DevTrain pairs; at K >= 1,000 the impostor tail, not
  tau, sets the threshold);
- tail check: the fraction of DevTrain people's own impostor pairs (5 draws of one image per
  person, each pair of people once per draw) below the fitted 1e-4, 1e-5 and 1e-6 distances;
- open set: ``--enrolled`` DevTrain people enrolled from one photo, their other photos as probes,
  at least ``--strangers`` photos of other DevTrain people as strangers, at the dev calibration's
  1:K threshold for FAR 1% for that K and for K = 10,000 (what the threshold alone costs); with
  ``--with-distractors`` also with the gallery grown to K = 10,000 by distractors
  (bench/distractors.py) from the people in neither DevTrain nor DevTest.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.openset import FAR, build, composition, distractors, report  # noqa: E402
from shared.settings import get_settings  # noqa: E402
from training.calibration import TAIL_RATE  # noqa: E402
from training.datasets.lfw import people_in, read_pairs  # noqa: E402
from training.datasets.lfw_cache import CachedLfw, encode_all, outside_devtest_keys  # noqa: E402
from training.lfw_calibration import (  # noqa: E402
    calibrate_encoder,
    impostor_tail_sample,
    split_images,
)


def tail_check(cache: CachedLfw, data, calibration, people: set[str]) -> None:
    """How many of ``people``'s impostor pairs (never seen by the fit) fall below the fitted
    distances: the tail is honest where the measured rate is at most the promised one."""
    outside, _ = split_images(data)
    found = [(img.parent.name, cache(img)) for img in outside if img.parent.name in people]
    names = np.array([n for n, v in found if v is not None])
    vectors = np.stack([v for _, v in found if v is not None]).astype(np.float32)
    lowest, total, _ = impostor_tail_sample(vectors, names, keep=0.002)
    checks = []
    for rate in (1e-4, 1e-5, 1e-6):
        at = calibration.impostor_distance(rate)
        below = int(np.searchsorted(lowest, at, side="right"))
        checks.append(f"{rate:.0e} at {at:.4f}: {below / total:.2e} ({below} pairs)")
    print(f"  tail check on {total:,} held-out impostor pairs: " + "; ".join(checks))


def run(encoder: str, detector: str, args: argparse.Namespace) -> None:
    data = get_settings().shared_data
    if args.cached_only:
        cache = CachedLfw(data, detector, encoder, only=set())
        # every design on the same images: those with a mirrored encoding cached so far
        mirrored = encode_all(data, detector, "sface", cache.keys, mirrored=True, only=set())
        cache.encodings[np.isnan(mirrored).any(axis=1)] = np.nan
        print(f"\n{encoder}: {int((~np.isnan(cache.encodings).any(axis=1)).sum()):,} images cached")
    else:
        cache = CachedLfw(data, detector, encoder, only=outside_devtest_keys(data))
    _, test_people = split_images(data)
    dev_people = people_in(read_pairs(data, "DevTrain"))
    outside_people = {p.parent.name for p in split_images(data)[0]}
    calibration = calibrate_encoder(
        cache,
        data,
        encoder,
        "bench.openset_dev (DevTrain people held out)",
        exclude=dev_people,
        tail_rate=args.tail_rate,
    )
    tail = calibration.impostor_tail or {}
    print(
        f"\n{calibration.model} ({cache.name}), dev calibration: tail anchor "
        f"{tail.get('anchor', 0):.4f} at {tail.get('rate', 0):.0e}, shape {tail.get('shape', 0):.3f},"
        f" scale {tail.get('scale', 0):.4f} from {tail.get('pairs', 0):,} pairs"
    )
    tail_check(cache, data, calibration, dev_people)
    others = outside_people - dev_people - test_people
    bench = build(
        cache,
        data,
        args.enrolled,
        args.strangers,
        args.seed,
        pool=dev_people,
        distractor_pool=others,
    )
    k = len(bench.enrolled)
    print(
        f"  dev open set: {k} DevTrain people enrolled, {len(bench.probes)} probes, "
        f"{len(bench.fused_probes)} fused probes; {len(bench.strangers)} stranger photos of "
        f"{len(bench.stranger_people)} people, {len(bench.fused_strangers)} fused strangers"
    )
    tau_k = calibration.identification_threshold(k, FAR)
    report(f"K = {k}, single photos", bench.gallery, bench.probes, bench.strangers, tau_k)
    report(f"K = {k}, fused", bench.gallery, bench.fused_probes, bench.fused_strangers, tau_k)
    # The K = 10,000 threshold on the same gallery: what the threshold alone costs the probes
    # (distractors add rank-1 competition on top; --distractors builds them, slowly on a CPU).
    tau_big = calibration.identification_threshold(args.distractors, FAR)
    label = f"K = {k} gallery at the K = {args.distractors:,} threshold"
    report(f"{label}, single", bench.gallery, bench.probes, bench.strangers, tau_big)
    report(f"{label}, fused", bench.gallery, bench.fused_probes, bench.fused_strangers, tau_big)
    if not args.with_distractors:
        return
    extra, sources = distractors(
        cache, data, detector, encoder, bench.distractor_people, args.distractors - k
    )
    big = np.concatenate([bench.gallery, extra])
    print(f"  K = {len(big):,}: {composition(extra, sources)}")
    report(f"K = {len(big):,}, single photos", big, bench.probes, bench.strangers, tau_big)
    report(f"K = {len(big):,}, fused", big, bench.fused_probes, bench.fused_strangers, tau_big)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default="sface,sface-flip")
    parser.add_argument("--detector", default=None, help="default: the setting face.detector")
    parser.add_argument("--enrolled", type=int, default=500)
    parser.add_argument("--strangers", type=int, default=1000, help="at least this many photos")
    parser.add_argument("--distractors", type=int, default=10_000, help="K to grow to")
    parser.add_argument(
        "--with-distractors", action="store_true", help="also grow the gallery to that K"
    )
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="encode nothing: every design on the LFW images whose plain and mirrored SFace "
        "encodings are cached (a paired comparison on a subset when the cache is partial)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tail-rate", type=float, default=TAIL_RATE, help="per-pair rate of the tail's anchor"
    )
    args = parser.parse_args()
    detector = args.detector or get_settings().face.detector
    for encoder in args.encoders.split(","):
        run(encoder, detector, args)


if __name__ == "__main__":
    main()
