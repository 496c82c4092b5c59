"""`alit reconstruct IMAGES --out DIR`: PNGs at every token length and at the chosen one (alit/reconstruct.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..criteria import EightBit, parse_criterion
from ..eval.inputs import image_paths, load_model
from ..progress import say
from ..reconstruct import Reconstruction, reconstruct_files
from .names import unique_names
from .options import add_criterion_arg, add_model_args, add_out_arg, add_progress_arg, at_least, check_criterion, \
    output_folder, print_table


def run(args) -> int:
    at_least(args.batch_size, 1, "--batch-size")
    check_criterion(args.criterion)  # a bad rule fails before the model loads
    out = output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    rule = parse_criterion(args.criterion or tok.config.criterion, tok)
    paths, failed = _find(args.images)
    bad = []  # one line per bad file; the others go on

    def bad_file(message: str) -> None:
        _say("error", message)
        bad.append(message)

    done = reconstruct_files(tok, output_names(paths), out, rule, args.batch_size, on_error=bad_file,
                             on_warning=lambda line: _say("warning", line), progress=not args.no_progress)
    if done:
        _print_done(done, tok.config.lengths, rule, out)
    failed += len(bad)
    if failed:
        print(f"alit reconstruct: {failed} input(s) failed", file=sys.stderr)
    return 1 if failed or not done else 0


def _find(inputs: list[str]) -> tuple[list[Path], int]:
    """The image files of the inputs, with a line for each one skipped or missing; how many are missing."""
    missing = []

    def problem(line: str) -> None:
        _say("error", line)
        missing.append(line)

    return image_paths(inputs, "alit reconstruct", on_problem=problem), len(missing)


def _say(kind: str, line: str) -> None:
    say(f"alit reconstruct: {kind}: {line}")  # above the bar, when one is drawn


def _print_done(done: list[Reconstruction], lengths: list[int], rule, out: Path) -> None:
    header = ["file", "tokens"] + [f"L1@{L}" for L in lengths] + ["folder"]
    print_table([header] + [[str(r.path), str(r.tokens)] + [f"{e:.4f}" for e in r.l1] + [r.folder] for r in done])
    print(f"{len(done)} image(s) reconstructed with {EightBit.of(rule)}: {out}/<folder>/input.png, "
          f"len{lengths[0]:03d}.png .. len{lengths[-1]:03d}.png, chosen.png")


def output_names(paths: list[Path]) -> dict[Path, str]:
    """A folder name per input: its stem, with -2, -3, ... when stems repeat."""
    return dict(zip(paths, unique_names([path.stem for path in paths])))


def add_parser(sub) -> None:
    s = sub.add_parser("reconstruct", help="reconstruct images at every token length and at the chosen one",
                       description="Read images (files, or folders searched recursively; what Pillow reads: "
                       "PNG, JPEG, WebP, GIF, BMP, TIFF, PPM, ..., including gray, palette, RGBA and 16-bit; "
                       "files in a folder without an image suffix are skipped, with a warning), resize the "
                       "shorter side and centre-crop to the model's size, 8-bit (an image smaller than that "
                       "is enlarged, with a warning; of an animation only the first frame is read, with a "
                       "warning), and write OUT/<folder>/input.png (as the model saw it), "
                       "len<L>.png at every length L and chosen.png at the shortest length the criterion "
                       "accepts (the longest when none does). Scoring, as `alit demo` and `alit eval`: each "
                       "reconstruction is clamped and rounded to 8 bits, as its PNG holds it, and compared "
                       "with the 8-bit input; the criterion judges that, and the table prints its L1 at each "
                       "length. A file that cannot be read gets one error line and the others go on; the exit "
                       "status is then 1.")
    s.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or folders")
    add_out_arg(s)
    add_criterion_arg(s, "when a length is good enough")
    add_model_args(s, batch_size=8)
    add_progress_arg(s)
    s.set_defaults(func=run)
