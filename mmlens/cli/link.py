"""`mmlens link RUN --out DIR`: the mutation-layer link to hallucination over a finished run.

    mmlens link runs/shapes --out link/shapes                       # the built-in benchmark
    mmlens link runs/amber --out link/amber           # words judged as AMBER's scorer does
    mmlens link runs/chair --objects objects.json --out link/chair

Writes mentions.csv (one row per generated object word), answers.csv (one per yes-no answer),
summary.csv (the rates with bootstrap intervals), signals.csv (each object word's layer signals:
mutation, visual attention, DoLa's and DeCo's) and separation.csv (each signal's AUROC for
hallucinated vs correct words, with intervals), visual_attention.csv (runs made with
--visual-attention: per layer, hallucinated vs correct), mitigation.csv (when the run has skip runs,
`mmlens run --skips paper`: each skip setting against the original) and report.html (one
offline page with the benchmark's metrics, the link, plots and example items).
"""

import argparse
import json
from pathlib import Path
from typing import Any

from mmlens.errors import ConfigError


def _judge(spec: str | None, identity: dict[str, Any]) -> Any:
    """Who decides which words are hallucinated objects: `--objects` (a vocabulary), else
    AMBER's scorer for AMBER-format runs (AMBER and the built-in benchmark)."""
    from mmlens.analyses.hallucination import ObjectVocabulary
    from mmlens.analyses.judges import AmberJudge

    if spec is None:
        data = identity.get("data")
        if (
            identity.get("benchmark") == "priors"
            and data
            and (Path(data) / "colours.json").is_file()
        ):
            spec = str(Path(data) / "colours.json")  # the benchmark judges colour words
    if spec is None:
        if identity.get("benchmark") in ("amber", "shapes") and data and Path(data).is_dir():
            from mmlens.benchmarks.amber import AmberData

            return AmberJudge(AmberData.load(data))
        raise ConfigError(
            f"This {identity.get('benchmark')} run needs --objects (AMBER's relation.json or a "
            "JSON list of object words), or its AMBER-format data folder back in place."
        )
    path = Path(spec)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"--objects {spec}: cannot read it as JSON ({error}).") from error
    if isinstance(content, dict):  # AMBER's relation.json: object -> words that count as it
        return ObjectVocabulary.from_amber(path)
    if isinstance(content, list) and all(isinstance(word, str) for word in content):
        return ObjectVocabulary.from_words(content)
    raise ConfigError(f"--objects {spec}: expected a list of words or AMBER's relation.json.")


def _skip_runs(folder: Path) -> dict[str, tuple[Any, list[int]]]:
    """The finished skip runs under RUN/skips/: name -> ((items, tokens), skipped blocks)."""
    from mmlens.runs import read_run
    from mmlens.runs.store import run_identity

    found = {}
    paper_first = sorted(
        (folder / "skips").glob("*/"), key=lambda p: (p.name[:5] != "skip.", p.name)
    )
    for sub in paper_first:
        if (sub / "items.parquet").is_file():
            blocks = run_identity(sub).get("skip_layers", [])
            found[sub.name] = (read_run(sub), list(blocks))
        else:
            print(f"mmlens link: {sub} is not finished (rerun its `mmlens run`); left out.")
    return found


def _link(args: argparse.Namespace) -> int:
    from mmlens.analyses.link import answer_stages, link_summary, object_mentions, summary_notes
    from mmlens.analyses.mitigation import mitigation_table
    from mmlens.analyses.signals import signal_separation, word_signals
    from mmlens.analyses.visual_attention import visual_attention_curves, word_visual_attention
    from mmlens.outputs import atomic_folder, check_out
    from mmlens.report.dataset import write_link_report
    from mmlens.runs import read_run
    from mmlens.runs.scoring import score_run
    from mmlens.runs.store import run_identity

    out, folder = Path(args.out), Path(args.folder)
    check_out(out, args.force)
    if args.n_resamples < 100:
        raise ConfigError(f"--n-resamples {args.n_resamples}: use at least 100 (default 10000).")
    items, tokens = read_run(folder)
    identity = run_identity(folder)
    rule = args.answer_rule or ("pope" if identity.get("benchmark") == "pope" else "amber")
    judge = _judge(args.objects, identity)
    mentions = object_mentions(items, tokens, judge)
    answers = answer_stages(items, tokens, rule=rule)
    bootstrap = {"n_resamples": args.n_resamples, "seed": args.seed}
    summary = link_summary(mentions, answers, **bootstrap)
    signals = word_signals(items, tokens, judge, mentions)
    separation = signal_separation(signals, **bootstrap)
    curves = None
    if "image_attention" in tokens.columns and len(mentions):
        words = word_visual_attention(items, tokens, judge, mentions)
        curves = visual_attention_curves(words, **bootstrap)
    scores = None if args.no_metrics else score_run(identity, items, rule)
    variants = _skip_runs(folder)
    mitigation = None
    if variants:
        metrics = (
            None if args.no_metrics else (lambda done: score_run(identity, done, rule).metrics)
        )
        mitigation = mitigation_table((items, tokens), variants, judge, metrics, **bootstrap)
    with atomic_folder(out, args.force) as work:
        mentions.to_csv(work / "mentions.csv", index=False)
        answers.to_csv(work / "answers.csv", index=False)
        summary.to_csv(work / "summary.csv", index=False)
        signals.to_csv(work / "signals.csv", index=False)
        separation.to_csv(work / "separation.csv", index=False)
        if curves is not None:
            curves.to_csv(work / "visual_attention.csv", index=False)
        if mitigation is not None:
            mitigation.to_csv(work / "mitigation.csv", index=False)
        write_link_report(
            work / "report.html",
            items,
            tokens,
            mentions,
            answers,
            summary,
            scores=scores,
            mitigation=mitigation,
            separation=separation,
            attention_curves=curves,
        )
    decimals = {"float_format": lambda v: f"{v:.3f}", "index": False, "na_rep": "n/a"}
    if scores is not None:
        print(scores.table(), end="\n\n")
    print(summary.drop(columns="note").to_string(**decimals))
    for note in summary_notes(summary):
        print(note)
    shown = ["signal", "auroc", "low", "high", "n_hallucinated", "n_correct", "note"]
    print("\nWhich signal separates hallucinated object words (AUROC, 0.5 = chance):")
    print(separation[shown].to_string(**decimals))
    if mitigation is not None:
        shown = ["setting", "skip_blocks", "changed", "similarity", "hallucination_rate"]
        shown += ["rate_change", "change_low", "change_high", "removed", "added"]
        print("\n" + mitigation[[c for c in shown if c in mitigation]].to_string(**decimals))
    print(
        f"\n{len(mentions)} object words (judged by {mentions.attrs['judge']}), {len(answers)} "
        f"yes-no answers; written to {out}"
    )
    if mentions.attrs["unplaced"]:
        print(
            f"{mentions.attrs['unplaced']} object nouns in the texts matched no generated word "
            "(tokenization differences) and are left out of the link."
        )
    return 0


def add_commands(commands: Any) -> None:
    parser = commands.add_parser(
        "link",
        help="mutation layers vs hallucination over a finished run, with intervals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", metavar="RUN", help="a finished `mmlens run` folder")
    parser.add_argument("--out", required=True, help="folder for the tables and report.html")
    parser.add_argument(
        "--objects",
        help="judge object words by this vocabulary (AMBER's relation.json or a JSON list of "
        "words) instead of AMBER's scorer (the default for AMBER and built-in runs)",
    )
    parser.add_argument(
        "--answer-rule",
        choices=("pope", "amber"),
        help="reading of yes-no answers (default: pope for POPE runs, AMBER's exact rule else)",
    )
    parser.add_argument(
        "--no-metrics", action="store_true", help="skip the benchmark's metrics (no scoring)"
    )
    parser.add_argument(
        "--n-resamples", type=int, default=10_000, help="bootstrap resamples per interval"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.set_defaults(run=_link)
