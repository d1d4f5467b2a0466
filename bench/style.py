"""Style transfer report: Gatys, the trained networks and the arbitrary-style network side by side.

    .venv/bin/python -m bench.style [--iterations 200] [--out bench/out/style]

For three held-out content photos x four styles (the committed networks' paintings) it runs
Gatys' optimisation at 256 px (Adam, the CLI's defaults), the trained network, and the
arbitrary-style network (Magenta's, shared/style/arbitrary.py: the painting's bottleneck, then
one transformer pass at the content's own 256 px) on the same content, and measures all three
outputs with the same J_content and J_style (shared.style.costs, the Gatys layers and weights).
It writes:

- ``contact_sheet.png``: per row content | style | Gatys | network | arbitrary, with J_content,
  J_style and seconds under each result;
- ``gatys_cost.png``: J over iterations of the twelve Gatys runs (log scale);
- ``report.json``: every figure; per run the cost ratios of each fast method to Gatys
  (``J_style / J_style(Gatys)``, ``J_content / J_content(Gatys)``) and their medians; Gatys
  iterations per second at 256 and 512 px; the trained networks' frames per second at 640x360
  and 1920x1080, in float32 and, where ``--precision`` resolves to it, bfloat16 (passes
  interleaved, with their ratio; the float32 network's costs are reported beside too); the
  arbitrary network's seconds per new style (bottleneck of a painting) and frames per second at
  640x360, painted at 384 px (the stylizer's default) and at full size (medians of timed
  passes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.machine import machine_info  # noqa: E402
from shared.settings import get_settings  # noqa: E402
from shared.style import costs  # noqa: E402
from shared.style.arbitrary import WORK_SIDE, ArbitraryStylizer  # noqa: E402
from shared.style.fast import load_network, resolve_precision  # noqa: E402
from shared.style.gatys import (  # noqa: E402
    DEFAULT_CONTENT_LAYER,
    DEFAULT_STYLE_LAYERS,
    CostRecord,
    GatysConfig,
    StyleResult,
    resize_longest,
    stylize,
)
from shared.style.vgg import feature_extractor  # noqa: E402
from training.style.training import read_rgb  # noqa: E402

CONTENTS = ("tubingen", "golden_gate", "hoovertowernight")
STYLES = ("starry_night", "great_wave", "the_scream", "shipwreck")


STYLE_TARGET = "own proportions, per position"
"""How Gatys' S was shown (``costs.per_position``): a cached result made otherwise is redone."""


def measure(
    extractor,
    content: np.ndarray,
    style: np.ndarray,
    image: np.ndarray,
    face: np.ndarray | None = None,
) -> dict:
    """J_content and J_style of ``image`` with the Gatys layers (the painting at the image's
    longest side, its own proportions, compared per position: ``costs.per_position``), and each
    layer's weighted share of J_style (``J_style_layers``); given a
    ``face`` mask ((H, W), 1 inside the faces), also J_face, J_content over the faces alone
    (``training.style.training.face_content_cost``)."""
    style = resize_longest(style, max(image.shape[:2]))
    f = {
        k: extractor(tf.constant(v[None].astype(np.float32)))
        for k, v in {"C": content, "S": style, "G": image}.items()
    }
    a_C, a_G = f["C"][DEFAULT_CONTENT_LAYER], f["G"][DEFAULT_CONTENT_LAYER]  # noqa: N806
    a_S = costs.per_position(f["S"], f["G"], list(DEFAULT_STYLE_LAYERS))  # noqa: N806
    layers = {
        name: weight * float(costs.layer_style_cost(a_S[name], f["G"][name]))
        for name, weight in DEFAULT_STYLE_LAYERS.items()
    }
    figures = {
        "J_content": float(costs.content_cost(a_C, a_G)),
        "J_style": sum(layers.values()),
        "J_style_layers": layers,
    }
    if face is not None:
        from training.style.training import face_content_cost

        mask = tf.constant(face[None, :, :, None].astype(np.float32))
        figures["J_face"] = float(face_content_cost(a_C, a_G, mask))
    return figures


def cached_gatys(stem: Path, content: np.ndarray, style: np.ndarray, iterations: int):
    """Gatys' result and seconds, kept as ``STEM.png`` + ``STEM.json`` so that a rerun (another
    method changed, or a run stopped on a loaded machine) does not optimise the same image again:
    same content, painting and config give the same image (docs/style.md)."""
    image_path, record_path = stem.with_suffix(".png"), stem.with_suffix(".json")
    if image_path.exists() and record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("style_target") == STYLE_TARGET:  # older runs squeezed the painting
            image = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
            history = [CostRecord(*r) for r in record["history"]]
            return StyleResult(image, history), record["seconds"]
    started = time.perf_counter()
    result = stylize(content, style, GatysConfig(iterations=iterations))
    seconds = time.perf_counter() - started
    cv2.imwrite(str(image_path), cv2.cvtColor(result.image, cv2.COLOR_RGB2BGR))
    record = {
        "seconds": seconds,
        "history": [list(r) for r in result.history],
        "style_target": STYLE_TARGET,
    }
    record_path.write_text(json.dumps(record))
    return result, seconds


def gatys_rate(content: np.ndarray, style: np.ndarray, size: int, iterations: int) -> float:
    """Adam iterations per second at ``size`` px (first call's tracing excluded)."""
    stylize(content, style, GatysConfig(size=size, iterations=2))
    started = time.perf_counter()
    stylize(content, style, GatysConfig(size=size, iterations=iterations))
    return iterations / (time.perf_counter() - started)


def network_fps(
    name: str,
    shape: tuple[int, int],
    precisions: tuple[str, ...],
    passes: int = 5,
    frames: int = 10,
) -> dict[str, float]:
    """Median frames per second of the network in each precision, their passes interleaved so
    that a machine getting busier slows both alike; with two, their ratio (second / first)."""
    networks = {p: load_network(name, precision=p) for p in precisions}  # type: ignore[arg-type]
    frame = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    rates: dict[str, list[float]] = {p: [] for p in precisions}
    for network in networks.values():
        network.stylize(frame, max_side=None)  # tracing excluded
    for _ in range(passes):
        for precision, network in networks.items():
            started = time.perf_counter()
            for _ in range(frames):
                network.stylize(frame, max_side=None)
            rates[precision].append(frames / (time.perf_counter() - started))
    report = {p: statistics.median(r) for p, r in rates.items()}
    if len(precisions) == 2:
        report["ratio"] = report[precisions[1]] / report[precisions[0]]
    return report


def arbitrary_speed(stylizer: ArbitraryStylizer, painting: np.ndarray, passes: int = 5) -> dict:
    """Seconds per new style (one bottleneck) and frames per second at 640x360."""
    stylizer.style_vector(painting)  # tracing excluded
    vector_s = []
    for _ in range(passes):
        started = time.perf_counter()
        vector = stylizer.style_vector(painting)
        vector_s.append(time.perf_counter() - started)
    frame = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    report = {"style_vector_s": statistics.median(vector_s)}
    for name, side in (
        (f"fps_640x360_painted_at_{WORK_SIDE}", WORK_SIDE),
        ("fps_640x360_full", None),
    ):
        stylizer.work_side = side
        stylizer.stylize(frame, vector)
        rates = []
        for _ in range(passes):
            started = time.perf_counter()
            for _ in range(3):
                stylizer.stylize(frame, vector)
            rates.append(3 / (time.perf_counter() - started))
        report[name] = statistics.median(rates)
    stylizer.work_side = None
    return report


FAST_METHODS = ("network", "network_float32", "arbitrary")


def ratios(run: dict) -> dict:
    """Each fast method's costs over Gatys': how far it is from the optimum it imitates."""
    gatys = run["gatys"]
    return {
        method: {
            "style": run[method]["J_style"] / gatys["J_style"],
            "content": run[method]["J_content"] / gatys["J_content"],
        }
        for method in FAST_METHODS
        if method in run
    }


def label(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """The image with a white strip of text under it."""
    strip = np.full((18 * len(lines) + 6, image.shape[1], 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(strip, line, (4, 16 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return np.vstack([image, strip])


def tile(image: np.ndarray, side: int, lines: list[str]) -> np.ndarray:
    """Fit ``image`` in a ``side`` x ``side`` white box, then label it."""
    fitted = resize_longest(image, side)
    box = np.full((side, side, 3), 255, np.uint8)
    top, left = (side - fitted.shape[0]) // 2, (side - fitted.shape[1]) // 2
    box[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return label(box, lines)


def plot_costs(histories: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, history in histories.items():
        axis.plot([r.step for r in history], [r.total for r in history], label=name)
    axis.set_yscale("log")
    axis.set_xlabel("Adam iteration")
    axis.set_ylabel("J(G) = alpha J_content + beta J_style")
    axis.set_title("Gatys at 256 px: cost over iterations")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "style")
    parser.add_argument(
        "--pairs", nargs="+", default=None, help="CONTENT/STYLE pairs (default: all twelve)"
    )
    parser.add_argument(
        "--frame-speed-only",
        action="store_true",
        help="speed at 640x360 only: no Gatys rates, no 1920x1080 (a loaded machine)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="the trained networks' compute type (auto: bfloat16 where the CPU has it natively)",
    )
    args = parser.parse_args()
    precision = resolve_precision(args.precision)
    # The float32 network is measured beside a bfloat16 one: the reference of its cost and speed.
    precisions = ("float32",) if precision == "float32" else ("float32", precision)
    pairs = [tuple(p.split("/")) for p in args.pairs] if args.pairs else None
    data = get_settings().shared_data / "style"
    args.out.mkdir(parents=True, exist_ok=True)
    extractor = feature_extractor([DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS])
    report: dict = {"machine": machine_info(), "network_precision": precision, "runs": []}
    rows, histories = [], {}
    arbitrary = ArbitraryStylizer(work_side=None)  # paints at the content's own 256 px
    for content_name in CONTENTS:
        content = resize_longest(read_rgb(data / "content" / f"{content_name}.jpg"), 256)
        for style_name in STYLES:
            if pairs is not None and (content_name, style_name) not in pairs:
                continue
            style = read_rgb(data / "paintings" / f"{style_name}.jpg")
            result, gatys_s = cached_gatys(
                args.out / f"gatys_{content_name}_{style_name}_{args.iterations}",
                content,
                style,
                args.iterations,
            )
            network = load_network(style_name, precision=precision)
            network.stylize(content)  # tracing excluded
            started = time.perf_counter()
            fast = network.stylize(content)
            fast_s = time.perf_counter() - started
            started = time.perf_counter()
            vector = arbitrary.style_vector(style)
            painted = arbitrary.stylize(content, vector)
            arbitrary_s = time.perf_counter() - started
            run = {
                "content": content_name,
                "style": style_name,
                "gatys": {**measure(extractor, content, style, result.image), "seconds": gatys_s},
                "network": {**measure(extractor, content, style, fast), "seconds": fast_s},
                "arbitrary": {
                    **measure(extractor, content, style, painted),
                    "seconds": arbitrary_s,
                },
                "content_itself": measure(extractor, content, style, content),
            }
            if precision != "float32":
                reference = load_network(style_name, precision="float32").stylize(content)
                run["network_float32"] = measure(extractor, content, style, reference)
            run["ratio_to_gatys"] = ratios(run)
            report["runs"].append(run)
            histories[f"{content_name} / {style_name}"] = result.history
            print(json.dumps(run), flush=True)
            side = 220
            rows.append(
                np.hstack(
                    [
                        tile(content, side, [content_name, ""]),
                        tile(style, side, [style_name, ""]),
                        tile(result.image, side, _caption("Gatys", run["gatys"])),
                        tile(fast, side, _caption("network", run["network"])),
                        tile(painted, side, _caption("arbitrary", run["arbitrary"])),
                    ]
                )
            )
    sheet = np.vstack(rows)
    cv2.imwrite(str(args.out / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    plot_costs(histories, args.out / "gatys_cost.png")

    content = read_rgb(data / "content" / "tubingen.jpg")
    style = read_rgb(data / "paintings" / "starry_night.jpg")
    if not args.frame_speed_only:
        report["gatys_iterations_per_s"] = {
            str(size): gatys_rate(content, style, size, 20) for size in (256, 512)
        }
    report["median_ratio_to_gatys"] = {
        method: {
            cost: statistics.median(r["ratio_to_gatys"][method][cost] for r in report["runs"])
            for cost in ("style", "content")
        }
        for method in FAST_METHODS
        if method in report["runs"][0]
    }
    report["arbitrary_speed"] = arbitrary_speed(ArbitraryStylizer(), style)
    sizes = ((640, 360),) if args.frame_speed_only else ((640, 360), (1920, 1080))
    report["network_fps"] = {
        f"{name} {w}x{h}": network_fps(name, (h, w), precisions)
        for name in STYLES
        for w, h in sizes
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    keys = ("gatys_iterations_per_s", "network_fps", "arbitrary_speed", "median_ratio_to_gatys")
    print(json.dumps({k: report[k] for k in keys if k in report}, indent=2))
    print(f"wrote {args.out}/contact_sheet.png, gatys_cost.png, report.json")


def _caption(method: str, figures: dict) -> list[str]:
    return [
        f"{method} {figures['seconds']:.2f} s",
        f"Jc {figures['J_content']:.2e} Js {figures['J_style']:.2e}",
    ]


if __name__ == "__main__":
    main()
