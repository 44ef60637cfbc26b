"""The ``mlc`` command: ``doctor``, ``grade``, ``release`` and ``bench``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def cmd_doctor(args) -> int:
    from .doctor import run_doctor

    return run_doctor()


def cmd_grade(args) -> int:
    from .grading.grader import format_report, grade_notebook, gradescope_json

    paths: list[Path] = []
    for target in args.notebooks:
        p = Path(target)
        if p.is_dir():
            if not args.all:
                print(f"mlc grade: {p} is a folder; use --all to grade every notebook in it",
                      file=sys.stderr)
                return 2
            paths += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.suffix != ".ipynb" or not p.exists():
            print(f"mlc grade: {p} is not a notebook file (.ipynb)", file=sys.stderr)
            return 2
        else:
            paths.append(p)
    if not paths:
        print("mlc grade: no notebooks to grade", file=sys.stderr)
        return 2
    reports = []
    for p in paths:
        rep = grade_notebook(p, timeout=args.timeout)
        reports.append(rep)
        print(format_report(rep))
        print()
    if len(reports) > 1:
        total = sum(r.score for r in reports)
        most = sum(r.max_score for r in reports)
        print(f"all notebooks: {total:g} / {most:g} points")
    if args.json:
        Path(args.json).write_text(json.dumps(gradescope_json(reports), indent=2),
                                   encoding="utf-8")
        print(f"results written to {args.json}")
    return 0


def cmd_release(args) -> int:
    from .grading.release import ReleaseError, check_release, release

    try:
        if args.check:
            problems = check_release(args.solutions, args.exercises)
            if problems:
                print("exercises/ is not what `mlc release` would write:")
                for p in problems:
                    print("  " + p)
                print("run `mlc release` and commit the result")
                return 1
            print("exercises/ is up to date")
            return 0
        changed = release(args.solutions, args.exercises)
    except (ReleaseError, FileNotFoundError) as err:
        print(f"mlc release: {err}", file=sys.stderr)
        return 1
    for p in changed:
        print(f"wrote {p}")
    print(f"{len(changed)} notebook(s) changed")
    return 0


def _find_benchmark(name: str) -> Path | None:
    for base in (Path.cwd(), _repo_root()):
        candidate = base / "benchmarks" / f"bench_{name}.py"
        if candidate.exists():
            return candidate
    return None


def _list_benchmarks() -> list[str]:
    names = set()
    for base in (Path.cwd(), _repo_root()):
        names |= {p.stem[len("bench_"):] for p in (base / "benchmarks").glob("bench_*.py")}
    return sorted(names)


def cmd_bench(args) -> int:
    names = _list_benchmarks()
    if args.name is None:
        print("benchmarks: " + (", ".join(names) or "none found (run from the repository)"))
        return 0
    path = _find_benchmark(args.name)
    if path is None:
        print(f"mlc bench: no benchmark named {args.name!r}; known: {', '.join(names)}",
              file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location(f"mlc_bench_{args.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlc", description="The mlc course's command.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="check that this machine can run the course")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("grade", help="grade notebooks (never modifies them)")
    p.add_argument("notebooks", nargs="+", help="notebook files, or folders with --all")
    p.add_argument("--all", action="store_true", help="grade every notebook in the folders")
    p.add_argument("--json", metavar="FILE", help="write Gradescope-style results here")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds allowed for each cell and each exercise (default 60)")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("release", help="write exercises/ from solutions/")
    p.add_argument("--check", action="store_true",
                   help="only check that exercises/ is up to date (exit 1 if not)")
    p.add_argument("--solutions", default="solutions")
    p.add_argument("--exercises", default="exercises")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("bench", help="run a benchmark from benchmarks/ (e.g. ndarray)")
    p.add_argument("name", nargs="?", help="benchmark name; omit to list them")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
