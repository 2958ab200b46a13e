"""What every verb of the command line shares: exit codes, the errors printed as one line, the options that several
verbs take (declared once here), and the parser and dispatcher built from a list of verb modules.

A verb is a module with `register(sub)`: it adds its parser to the `sub` subparsers and sets its handler with
`set_defaults(func=...)`. Handlers import their stage (and torch) only when they run, and so does this module's
`run`, so `import edgeprune.cli` and `--help` stay instant (tests/test_house.py checks that torch stays out).
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

DESCRIPTION = ("Prune object detectors as a whole and search per-layer pruning rates against latency measured on "
               "your board (Jetson TX2 / Orin, or this CPU).")
EXIT_CODES = """exit codes:
  0  done
  1  an unexpected error (a traceback follows; please report it)
  2  bad input: a file, field or option (the message names it and says what to do)
  3  search: no trial met the hard limits (target latency, --max-gflops, --max-mparams); the closest plan is in
     OUT/closest.pt, the rest of the report as usual; prune --progressive: the final model's measured latency
     misses the target (the model is saved all the same)"""
EXIT_INPUT, EXIT_NO_FEASIBLE = 2, 3


def user_errors() -> tuple[type[Exception], ...]:
    """Errors caused by the user's input or a device that failed: the CLI prints them as one line, not a traceback.
    (ImportError: an optional dependency such as TensorRT or CUDA is missing; its message says so.)"""
    from ..checkpoint import CheckpointError  # torch: imported once a verb runs, not for --help
    from ..data.labels import LabelError
    from ..latency.base import MeasurementError

    return CheckpointError, LabelError, FileNotFoundError, ValueError, MeasurementError, ImportError


class NoFeasibleResult(Exception):
    """A run that finished but found nothing that meets the user's limits (exit code 3)."""


# -- options several verbs take ---------------------------------------------------------------------------------

MODEL_HELP = ("an edgeprune checkpoint, a registered name (yolov5n), package.module:function (a factory of yours), "
              "or an ultralytics .yaml / .pt")


def add_model(p: argparse.ArgumentParser, help: str = MODEL_HELP) -> None:
    """The model a verb works on, given as MODEL or --model (ultralytics' word), with a factory's keyword
    arguments and weights for a model built from a name, a factory or a yaml."""
    p.add_argument("checkpoint", nargs="?", metavar="MODEL", help=help)
    p.add_argument("--model", dest="model_source", metavar="MODEL", help="the same as the positional MODEL")
    p.add_argument("--model-kwargs", default="{}", metavar="JSON",
                   help='keyword arguments of a factory or registered name, e.g. \'{"num_classes": 1}\'')
    p.add_argument("--weights", metavar="PATH", help="weights for a model built from a name, a factory or a yaml: a "
                   "state dict (torch.save(model.state_dict())), .safetensors or an edgeprune checkpoint")


def model_name(args: argparse.Namespace) -> str:
    """The MODEL a verb was given (positional or --model); ValueError when neither or both."""
    if (args.checkpoint is None) == (args.model_source is None):
        raise ValueError("give the model once: MODEL or --model MODEL")
    return args.checkpoint or args.model_source


def load_model_arg(args: argparse.Namespace):
    """The model of `add_model`'s options (edgeprune.checkpoint.load_source), in eval mode."""
    import json

    from ..checkpoint import load_source

    try:
        kwargs = json.loads(args.model_kwargs)
    except json.JSONDecodeError as e:
        raise ValueError(f"--model-kwargs: not JSON ({e}): pass an object, e.g. '{{\"num_classes\": 1}}'") from None
    if not isinstance(kwargs, dict):
        raise ValueError("--model-kwargs: pass a JSON object of keyword arguments, e.g. '{\"num_classes\": 1}'")
    return load_source(model_name(args), kwargs, args.weights)


def add_imgsz(p: argparse.ArgumentParser, help: str = "input size (pixels)") -> None:
    p.add_argument("--imgsz", "--img", type=int, default=320, dest="imgsz", help=help)


def add_data(p: argparse.ArgumentParser, required: bool = True,
             help: str = "data.yaml (or any dataset `edgeprune data convert` reads)") -> None:
    p.add_argument("--data", required=required, help=help)


def add_skip_bad(p: argparse.ArgumentParser, help: str = "skip and count bad labels instead of stopping") -> None:
    p.add_argument("--skip-bad", action="store_true", help=help)


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed")


def add_no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the cores free now, re-checked every "
                   "epoch)")


def add_run_options(p: argparse.ArgumentParser, out: str, out_help: str) -> None:
    """Where a training run writes and how it shows progress (`train`, `finetune`)."""
    p.add_argument("--out", default=out, help=out_help)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    add_skip_bad(p)
    add_no_progress(p)


# -- the parser and the dispatcher ------------------------------------------------------------------------------

def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's help ends with its default (argparse's ArgumentDefaultsHelpFormatter skips options without
    a help text and repeats defaults a help already states)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)
            continue
        if not action.option_strings or action.nargs == 0 or any(action.default is v for v in (None, False,
                                                                                                  argparse.SUPPRESS)):
            continue
        if "default" not in (action.help or ""):
            default = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
            text = f"default: {default}".replace("%", "%%")
            action.help = f"{action.help} ({text})" if action.help else text


def build_parser(verbs: list[ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeprune", description=DESCRIPTION, epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="VERB")
    for verb in verbs:
        verb.register(sub)
    show_defaults(parser)
    return parser


def run(argv: list[str] | None, verbs: list[ModuleType]) -> int:
    """Parse `argv` against `verbs` and run the chosen one; returns the exit code (EXIT_CODES)."""
    args = build_parser(verbs).parse_args(argv)
    try:
        args.func(args)
    except user_errors() as e:
        print(f"edgeprune {args.cmd}: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except NoFeasibleResult as e:
        print(f"edgeprune {args.cmd}: {e}", file=sys.stderr)
        return EXIT_NO_FEASIBLE
    return 0
