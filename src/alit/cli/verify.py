"""`alit verify-reference CASE_DIR...`: recompute the paper's reference cases and compare (alit/verify.py)."""
from __future__ import annotations

from ..verify import summarize, verify_case


def run(args) -> int:
    failed = 0
    for case in args.cases:
        checks = verify_case(case)
        for c in checks:
            if args.verbose or not c.ok:
                print(c.line())
        bad = [c for c in checks if not c.ok]
        failed += len(bad)
        print(f"{case}: {len(checks) - len(bad)}/{len(checks)} keys within tolerance")
        for kind, (a, r) in sorted(summarize(checks).items()):
            print(f"  largest error [{kind}]: abs {a:.3g}, rel {r:.3g}")
    return 1 if failed else 0


def add_parser(sub) -> None:
    s = sub.add_parser("verify-reference", help="recompute reference cases of the paper's code and compare",
                       description="Build the model from a reference case's state dict (through the same "
                       "conversion as `alit convert`), recompute every stored tensor and loss, print one line "
                       "per failing key (all with -v) and the largest error per kind. Exit 0 only when every "
                       "key is within tolerance (exact for integer tensors).")
    s.add_argument("cases", nargs="+", metavar="CASE_DIR", help="folder(s) in the format of "
                   "tests/reference/README.md, e.g. tests/reference/*_tiny in a clone of the repository")
    s.add_argument("-v", "--verbose", action="store_true", help="print every key, not only failures")
    s.set_defaults(func=run)
