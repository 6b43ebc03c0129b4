"""The one-image commands: demo, trace, report, skip, trajectories, and models."""

import argparse
from pathlib import Path
from typing import Any

from PIL import Image

from mmlens.cli.options import (
    IMAGE_SUFFIXES,
    add_generation_options,
    add_model_options,
    check_out_file,
    check_out_folder,
    load_model,
    parse_block_sets,
    rivals,
)
from mmlens.errors import ConfigError
from mmlens.inputs import load_image
from mmlens.progress import progress_bar
from mmlens.trace import Trace
from mmlens.zoo.shapes.scenes import SHAPES, Scene, SceneObject, draw_scene

#: The bundled scene: a small green circle and a large red square. It breaks `mmlens/shapes`'s
#: training prior (green things were mostly triangles), and the model captions the circle as "a
#: small green triangle": the demo opens on a hallucination whose truth is known.
DEMO_SCENE = Scene(
    (
        SceneObject("circle", "green", "small", "left"),
        SceneObject("square", "red", "large", "right"),
    )
)


def demo_scene() -> Image.Image:
    """The bundled scene's image (`DEMO_SCENE`)."""
    return draw_scene(DEMO_SCENE)


def per_layer_table(trace: Trace, step: int = 0) -> str:
    """The lens statistics of one generation step, one line per layer."""
    frame = trace.to_frame()
    rows = frame[frame.step == step][
        ["layer", "token", "prob", "entropy", "jsd", "top1_token", "top1_prob"]
    ]
    return rows.to_string(index=False, float_format=lambda value: f"{value:.4f}")


def _demo(args: argparse.Namespace) -> int:
    model = load_model(args)
    trace = model.trace(demo_scene(), args.prompt, max_new_tokens=args.max_new_tokens)
    if not 0 <= args.step < trace.n_steps:
        raise ConfigError(f"--step {args.step}: the generation has steps 0..{trace.n_steps - 1}.")
    print(
        f"\nModel {args.model}. Generated: {trace.text!r}\nLayers 0..{model.n_blocks} "
        f"(0 = embeddings, l = output of block l-1); step {args.step} predicts "
        f"{trace.tokens[args.step]!r}:\n"
    )
    print(per_layer_table(trace, args.step))
    return 0


def _models(args: argparse.Namespace) -> int:
    from mmlens.registry import supported_families
    from mmlens.zoo import ASSEMBLED, shipped_models

    print("Supported architectures (load a local directory or a cached hub id):")
    families = supported_families()
    width = max(len(name) for name, _ in families)
    for name, family in families:
        print(f"  {name:<{width}}  {family}")
    print("Shipped models (no download needed):")
    for name, path in shipped_models().items():
        print(f"  {name}  ({path})")
    for name, source in ASSEMBLED.items():
        print(f"  {name}  (assembled offline on first load: {source})")
    return 0


def _trace(args: argparse.Namespace) -> int:
    out = check_out_folder(args.out)  # fail on a bad output or image before the slow model load
    image = load_image(args.image)
    model = load_model(args)
    words = rivals(args)
    trace = model.trace(
        image,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        rivals=words,
        lens=args.lens,
        keep_features=args.keep_features,
        visual_attention=args.visual_attention,
        attention_regions=args.attention_regions,
        progress=True,
    )
    print(f"Generated: {trace.text!r}\nSaved to {trace.save(out)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from mmlens.report import ReportSettings, check_out, write_report

    image = load_image(args.image) if args.image else demo_scene()
    truth, objects = _words(args.truth), _words(args.objects)
    if not args.image and not truth and not objects:  # the bundled scene: its truth is known
        truth, objects = tuple(DEMO_SCENE.shapes), SHAPES
    settings = ReportSettings(
        prompt=args.prompt,
        max_new_tokens=args.max_new_tokens,
        rivals=tuple(rivals(args)),
        lens=args.lens,
        truth=truth,
        objects=objects,
    )
    out = Path(args.out)
    check_out(out, args.force)  # fail before the slow model load
    model = load_model(args)
    print(f"Report written to {write_report(model, image, out, settings, force=args.force)}")
    return 0


def _words(text: str | None) -> tuple[str, ...]:
    """'dog, grass' -> ('dog', 'grass')."""
    return tuple(word.strip() for word in (text or "").split(",") if word.strip())


def _skip(args: argparse.Namespace) -> int:
    from mmlens.analyses.skip import skip_experiments, skip_html
    from mmlens.analyses.stages import trace_stages

    image = load_image(args.image) if args.image else demo_scene()
    extra = parse_block_sets(args.blocks or [], "--blocks")
    html = check_out_file(args.html, "--html") if args.html else None
    model = load_model(args)
    trace = model.trace(image, args.prompt, max_new_tokens=args.max_new_tokens)
    stages = trace_stages(trace)
    print(f"critical layer {stages.critical_layer}; mutation layers {stages.mutation_layers}")
    table = skip_experiments(
        model, image, args.prompt, stages=stages, extra=extra, max_new_tokens=args.max_new_tokens
    )
    print(
        table[["name", "skip_blocks", "similarity", "token_edit_distance", "text"]].to_string(
            index=False
        )
    )
    if html is not None:
        html.write_text(skip_html(table), encoding="utf-8")
        print(f"HTML written to {html}")
    return 0


def _trajectories(args: argparse.Namespace) -> int:
    from mmlens.analyses.stages import layer_groups, summarize_stages, token_stages
    from mmlens.analyses.trajectories import embed_features, first_token_features, plot_trajectories

    folder = Path(args.images)
    if not folder.is_dir():
        raise ConfigError(f"--images {folder} is not a folder of images.")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 2:
        raise ConfigError(f"{folder} holds {len(paths)} images; need at least 2.")
    out = check_out_file(args.out, "--out", figure_formats())
    images = [load_image(path) for path in paths]
    model = load_model(args)
    traces = [
        model.trace(image, args.question, max_new_tokens=1, keep_features=True, progress=False)
        for image in progress_bar(images, desc="images")
    ]
    stages = summarize_stages([token_stages(trace) for trace in traces])
    result = embed_features(
        first_token_features(traces),
        layers=traces[0].layers.tolist(),
        kind="images",
        groups=layer_groups(traces[0], stages),
        method=args.method,
        item_labels=[f"{p.name}: {t.text}" for p, t in zip(paths, traces, strict=True)],
    )
    plot_trajectories(result).savefig(out)
    result.frame.to_csv(out.with_suffix(".csv"), index=False)
    for path, trace in zip(paths, traces, strict=True):
        print(f"{path.name}: {trace.text!r}")
    print(
        f"{args.method}: trustworthiness {result.trustworthiness:.3f}; wrote {out} and "
        f"{out.with_suffix('.csv')}"
    )
    return 0


def figure_formats() -> list[str]:
    """The file formats matplotlib can save a figure in (png, pdf, svg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return list(FigureCanvasBase.get_supported_filetypes())


def add_commands(commands: Any) -> None:
    """Register the one-image commands on the `mmlens` sub-command parser."""
    demo = commands.add_parser("demo", help="trace the shipped model and print a per-layer table")
    add_model_options(demo)
    add_generation_options(demo, max_new_tokens=40)
    demo.add_argument("--step", type=int, default=7, help="which generated token to tabulate")
    demo.set_defaults(run=_demo)
    trace = commands.add_parser("trace", help="record a generation layer by layer and save it")
    trace.add_argument("image", help="image file (png, jpg, ...)")
    add_model_options(trace)
    add_generation_options(trace, lens_and_rivals=True)
    trace.add_argument(
        "--keep-features", action="store_true", help="also keep every layer's residual vector"
    )
    trace.add_argument(
        "--visual-attention",
        action="store_true",
        help="also record each block's and head's share of attention on image tokens",
    )
    trace.add_argument(
        "--attention-regions",
        type=int,
        metavar="N",
        help="also record it per region of an N x N split of the patch grid",
    )
    trace.add_argument("--out", default="trace", help="output folder")
    trace.set_defaults(run=_trace)
    report = commands.add_parser("report", help="write an HTML report of every analysis")
    report.add_argument("image", nargs="?", help="image file (default: a bundled scene)")
    add_model_options(report)
    add_generation_options(report, lens_and_rivals=True)
    report.add_argument("--out", default="mmlens-report", help="output folder")
    report.add_argument("--force", action="store_true", help="replace an existing output folder")
    report.add_argument(
        "--truth",
        help="objects really in the image, comma-separated (with --objects: hallucinated object "
        "words are shown against them; the bundled scene's are known)",
    )
    report.add_argument(
        "--objects", help="the words that name objects, comma-separated (e.g. COCO's classes)"
    )
    report.set_defaults(run=_report)
    skips = commands.add_parser("skip", help="skip experiments (paper Fig. 5) on one image")
    skips.add_argument("image", nargs="?", help="image file (default: a bundled scene)")
    add_model_options(skips)
    add_generation_options(skips)
    skips.add_argument(
        "--blocks",
        action="append",
        metavar="NAME=1,2,5-7",
        help="an extra set of blocks to skip (repeatable)",
    )
    skips.add_argument("--html", help="also write the side-by-side comparison here")
    skips.set_defaults(run=_skip)
    paths = commands.add_parser(
        "trajectories", help="first-answer-token features across a folder (Fig. 7)"
    )
    paths.add_argument("--images", required=True, help="folder of images")
    paths.add_argument("--question", required=True, help='a one-word question, e.g. "what colour?"')
    add_model_options(paths)
    paths.add_argument(
        "--method",
        choices=["tsne", "pca", "paper"],
        default="tsne",
        help="2-D embedding of the features (paper: the paper's t-SNE settings)",
    )
    paths.add_argument("--out", default="trajectories.png", help="figure path (+ .csv beside it)")
    paths.set_defaults(run=_trajectories)
    models = commands.add_parser("models", help="supported families and shipped models")
    models.set_defaults(run=_models)
