r"""Build the static trajectory viewer (one self-contained HTML file) of evaluation runs from their predictions.

    python eval/view_run.py runs/quickstart/eval/popqa_smart.jsonl            # -> runs/quickstart/eval/popqa_smart.html
    python eval/view_run.py runs/quickstart/eval/popqa_smart.jsonl \
        --compare runs/quickstart/eval/popqa_vanilla_rag.jsonl     # -> .../popqa_smart_vs_popqa_vanilla_rag.html
    python eval/view_run.py runs/quickstart/eval/{popqa,arc_c}_smart.jsonl --output smart.html   # several datasets
    python eval/view_run.py runs/quickstart/eval/popqa_smart.jsonl --screenshot --filters 'result=wrong'
                                                                   # + runs/quickstart/eval/popqa_smart.png

Each predictions file is read with the `.metrics.json` beside it; `--compare` gives one partner per predictions
file (joined on id, shown side by side). The page is written atomically. `--screenshot` also opens it in headless
Chromium (needs chromium and chromedriver: Debian's chromium and chromium-driver) and saves what a window shows,
with the filters of `--filters` (the page's URL fragment) applied. See smart/evaluation/viewer.py.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from smart.evaluation import viewer
from smart.io import exit_on_input_error


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", nargs="+", help="predictions JSONL written by eval/run_eval.py")
    p.add_argument("--compare", nargs="+", default=None, help="one predictions file per predictions file, side by side")
    p.add_argument("--output", default=None,
                   help="the page (default: <stem>.html, or <stem>_vs_<other stem>.html, beside the first predictions)")
    p.add_argument("--title", default=None, help="page title (default: the runs' names)")
    p.add_argument("--screenshot", nargs="?", const="", default=None, metavar="PNG",
                   help="also save a screenshot of the page in headless Chromium (default PNG: the page's path, .png)")
    p.add_argument("--filters", default="", metavar="FRAGMENT",
                   help="the screenshot's filter state, as in the page's URL: 'result=wrong&fallback=locator', "
                        "'compare=differ', 'q=hamlet', 'page=2'")
    p.add_argument("--window", type=window_size, default=viewer.WINDOW, metavar="WxH",
                   help="the screenshot's size in pixels (default: {}x{})".format(*viewer.WINDOW))
    p.add_argument("--at", choices=viewer.SCREENSHOT_AT, default="top",
                   help="what the screenshot shows: the top of the page (metrics, settings) or, scrolled, the filters "
                        "and the cards (default: %(default)s)")
    args = p.parse_args(argv)
    if args.compare and len(args.compare) != len(args.predictions):
        p.error(f"{len(args.predictions)} predictions files but {len(args.compare)} --compare files (one each)")
    if args.screenshot is None and (args.filters or args.window != viewer.WINDOW or args.at != "top"):
        p.error("--filters, --window and --at set up the screenshot: add --screenshot")
    if args.output is None and len(args.predictions) > 1:
        p.error("several predictions files: name the page with --output")
    output = args.output or (viewer.compare_path(args.predictions[0], args.compare[0]) if args.compare
                             else viewer.page_path(args.predictions[0]))
    paths = [Path(p) for p in args.predictions + (args.compare or [])]
    stems = Counter(p.stem for p in paths)  # two checkpoints' popqa_smart.jsonl: name them by their folders too
    labels = [p.stem if stems[p.stem] == 1 else f"{p.parent.name}/{p.stem}" for p in paths]
    with exit_on_input_error():
        loaded = [viewer.load_run(path, label) for path, label in zip(paths, labels)]
        runs, compare = loaded[:len(args.predictions)], loaded[len(args.predictions):] or None
        page = viewer.write_page(output, runs, compare, args.title)
    print(f"wrote {page} ({sum(len(r.rows) for r in runs)} examples, {page.stat().st_size / 1e3:.0f} kB)")
    if args.screenshot is not None:
        try:
            png = viewer.screenshot(page, args.screenshot or None, args.filters, args.window, args.at)
        except viewer.BrowserError as e:
            print(f"error: no screenshot: {e}", file=sys.stderr)
            return 1
        shown = f", #{args.filters.lstrip('#')}" if args.filters else ""
        print(f"wrote {png} ({args.window[0]}x{args.window[1]}, {args.at}{shown})")
    return 0


def window_size(text: str) -> tuple[int, int]:
    """`1280x900` -> (1280, 900)."""
    try:
        width, height = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (1280x900), got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive width and height, got {text!r}")
    return width, height


if __name__ == "__main__":
    sys.exit(main())
