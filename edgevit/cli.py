"""``edgevit`` command line: parses arguments, calls the API, maps errors to exit codes.

Exit codes (see ``edgevit.errors``): 0 ok, 1 internal error, 2 bad option/config, 3 parity failure,
4 checkpoint error, 5 missing toolchain, 6 export failure, 7 output exists.

Nothing heavy is imported at module level so that ``edgevit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from edgevit.errors import EdgeVitError

EXIT_CODES_HELP = """exit codes:
  0  success
  1  internal error (a bug: please report it)
  2  bad option, recipe, model name, target or precision
  3  parity failure: the artifact's outputs differ from PyTorch beyond tolerance
  4  checkpoint cannot be read, is unsafe, or does not match the model
  5  an optional toolchain is not installed
  6  a toolchain failed to export or lower the model
  7  output exists and --overwrite was not given
"""


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------------------------------------------------------
# info / models


def _add_info(sub):
    p = sub.add_parser("info", help="parameters, MACs and per-stage shapes of a model",
                       description="Print parameters, MACs, per-stage output shapes and block types of a model.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name (see `edgevit models`)")
    p.add_argument("--img-size", default=None, help="N or HxW (default: the model's own, 224 for S/B/L)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier size (0 = no head)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from edgevit.info import format_info, model_info

    info = model_info(args.model, args.img_size, num_classes=args.num_classes)
    _print_json(info) if args.json else print(format_info(info))
    return 0


def _add_models(sub):
    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from edgevit.models import get_config, list_models

    rows = [{"name": n, "depths": list(get_config(n).depths), "img_size": get_config(n).default_img_size,
             "pretrained_tags": list(get_config(n).pretrained_tags)} for n in list_models()]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<20} depths={r['depths']} default size {r['img_size']}")
    return 0


# ---------------------------------------------------------------------------------------------------------------


COMMANDS = [_add_info, _add_models]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgevit",
        description="Next-ViT from a PyTorch checkpoint to fast, verified on-device artifacts.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except EdgeVitError as e:
        print(f"edgevit {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"edgevit {args.command}: interrupted; nothing partial was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
