"""The ``mlc`` command: ``doctor``, ``grade``, ``autograder``, ``release`` and ``bench``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def cmd_doctor(args) -> int:
    from .doctor import run_doctor

    return run_doctor()


def _limits(args, jobs: int = 1):
    from .grading.limits import Limits, parse_size

    default = Limits.default(jobs)
    memory = default.memory_bytes if args.memory_limit is None else parse_size(args.memory_limit)
    procs = default.max_processes if args.max_processes is None else (args.max_processes or None)
    return Limits(memory_bytes=memory, max_processes=procs)


def _trusted_start(args):
    """For an instructor's grading: the package's fingerprint, checked now, before any
    worker runs. None (and a message) if it fails."""
    from .grading import manifest

    try:
        want = manifest.expected(args.manifest)
        manifest.verify(want)
    except manifest.PackageChanged as err:
        print(f"mlc grade: refusing to grade: {err}", file=sys.stderr)
        return None
    return want


def _trusted_end(want) -> None:
    """Say loudly when the package changed while grading. Isolated workers cannot write it,
    and everything the grader runs was imported before them, so the cause is someone
    editing this installation; a later run with ``--manifest`` would refuse it."""
    from .grading import manifest

    try:
        manifest.verify(want)
    except manifest.PackageChanged as err:
        print(f"mlc grade: WARNING: the package changed while grading ({err}); if nobody "
              "edited it, do not trust these grades", file=sys.stderr)


def cmd_grade(args) -> int:
    from .grading.grader import NotebookError, format_report, grade_notebook, gradescope_json
    from .grading.isolate import IsolationUnavailable, detect

    if args.roster:
        return _grade_roster(args)
    isolation = want = None
    if args.isolate:
        want = _trusted_start(args)
        if want is None:
            return 3
        try:
            isolation = detect(args.user)
        except IsolationUnavailable as err:
            print(f"mlc grade --isolate: {err}", file=sys.stderr)
            return 3
    paths: list[Path] = []
    for target in args.notebooks:
        p = Path(target)
        if p.is_dir():
            if not args.all:
                print(f"mlc grade: {p} is a folder; use --all to grade every notebook in it, "
                      "or --roster for a folder of students' submissions", file=sys.stderr)
                return 2
            paths += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif not p.exists():
            print(f"mlc grade: {p} does not exist", file=sys.stderr)
            return 2
        elif p.suffix != ".ipynb":
            print(f"mlc grade: {p} is not a notebook file (.ipynb)", file=sys.stderr)
            return 2
        else:
            paths.append(p)
    if not paths:
        print("mlc grade: no notebooks to grade", file=sys.stderr)
        return 2
    if args.json and not Path(args.json).resolve().parent.is_dir():
        print(f"mlc grade: cannot write --json {args.json}: the folder "
              f"{Path(args.json).resolve().parent} does not exist", file=sys.stderr)
        return 2
    limits = _limits(args)
    hide = tuple(Path(h).resolve() for h in [*args.hide, *(
        [Path(args.json).resolve().parent] if args.json else [])])
    reports, failed = [], False
    for p in paths:
        try:
            rep = grade_notebook(p, timeout=args.timeout, limits=limits, isolation=isolation,
                                 hide=hide)
        except NotebookError as err:
            print(f"mlc grade: {err}", file=sys.stderr)
            failed = True
            continue
        if not rep.results:
            print(f"mlc grade: no course exercise found in {p} (is it one of the course's "
                  "exercise notebooks, with its check(...) cells?)", file=sys.stderr)
            failed = True
            continue
        reports.append(rep)
        print(format_report(rep))
        print()
    if len(reports) > 1:
        total = sum(r.score for r in reports)
        most = sum(r.max_score for r in reports)
        print(f"all notebooks: {total:g} / {most:g} points")
    if want is not None:
        _trusted_end(want)
    if args.json and reports:
        Path(args.json).write_text(json.dumps(gradescope_json(reports), indent=2),
                                   encoding="utf-8")
        print(f"results written to {args.json}")
    return 1 if failed else 0


def _grade_roster(args) -> int:
    from .grading import similarity
    from .grading.isolate import IsolationUnavailable
    from .grading.roster import (format_summary, grade_roster, plot_totals, similar_pairs,
                                 write_csv)

    if len(args.notebooks) != 1 or not Path(args.notebooks[0]).is_dir():
        print("mlc grade --roster: give one folder of submissions (a subfolder or a notebook "
              "per student)", file=sys.stderr)
        return 2
    jobs = args.jobs or os.cpu_count() or 1
    limits = _limits(args, jobs)
    want = _trusted_start(args)
    if want is None:
        return 3
    out = Path(args.out)
    print(f"grading with {jobs} worker(s), {limits.describe()} each", file=sys.stderr)
    try:
        rows = grade_roster(args.notebooks[0], jobs=jobs, timeout=args.timeout, limits=limits,
                            progress=not args.quiet, user=args.user, unsafe=args.unsafe,
                            hide=(out.resolve(), *(Path(h).resolve() for h in args.hide)))
    except IsolationUnavailable as err:
        print(f"mlc grade --roster: {err}", file=sys.stderr)
        return 3
    print(("WARNING: " if rows.unsafe else "") + rows.isolation, file=sys.stderr)
    if not rows:
        print(f"mlc grade --roster: no notebooks in {args.notebooks[0]}", file=sys.stderr)
        return 2
    _trusted_end(want)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "grades.csv")
    plot_totals(rows, out / "totals.png")
    similarity.write_csv(similar_pairs(rows), out / "similarity.csv")
    print(format_summary(rows))
    print(f"grades written to {out / 'grades.csv'}, histogram to {out / 'totals.png'}, "
          f"near-copies to review in {out / 'similarity.csv'}")
    return 0


def cmd_grading_manifest(args) -> int:
    from .grading import manifest

    path = manifest.write(args.out)
    print(f"wrote {path}: pass it to `mlc grade --manifest {path}` on the grading machine")
    return 0


def cmd_autograder(args) -> int:
    from .grading.autograder import build_bundle

    try:
        path = build_bundle(args.unit, args.out)
    except (ValueError, FileNotFoundError) as err:
        print(f"mlc autograder: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}: upload it as the course platform's autograder for unit {args.unit}")
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


def cmd_deploy(args) -> int:
    from . import deploy

    try:
        art = deploy.load(args.path)
    except (deploy.DeployError, ValueError, OSError) as e:
        print(f"mlc deploy report: {e}", file=sys.stderr)
        return 2
    data = None
    if args.digits:
        from .data import load_digits

        data = load_digits()[2:]
    print(art.report(data=data, batch=args.batch))
    return 0


def cmd_dist(args) -> int:
    from .dist import launch

    script = args.script
    if not Path(script).is_file():
        print(f"mlc dist run: no such script: {script}", file=sys.stderr)
        return 2
    try:
        return launch.run(args.n, script, args.args).returncode
    except (RuntimeError, ValueError) as err:
        print(f"mlc dist run: {err}", file=sys.stderr)
        return 2


def _positive_seconds(text: str) -> float:
    """``--timeout``: a limit of 0 s (or less) would fail every exercise before it ran."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} s: a time limit must be more than 0 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlc", description="The mlc course's command.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="check that this machine can run the course")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("grade", help="grade notebooks (never modifies them)")
    p.add_argument("notebooks", nargs="+", help="notebook files, or folders with --all")
    p.add_argument("--all", action="store_true", help="grade every notebook in the folders")
    p.add_argument("--json", metavar="FILE", help="write Gradescope-style results here")
    p.add_argument("--timeout", type=_positive_seconds, default=60.0,
                   help="seconds allowed for each cell and each exercise (default 60)")
    p.add_argument("--roster", action="store_true",
                   help="grade a folder of submissions (one subfolder or notebook per student)"
                        " into grades.csv, a summary and a histogram")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel workers for --roster (default: the number of cores)")
    p.add_argument("--out", default="grades", help="output folder for --roster")
    p.add_argument("--memory-limit", default=None, metavar="SIZE",
                   help="memory cap per worker, e.g. 2G ('none' for no cap; default: a share "
                        "of this machine's memory, at most 4G)")
    p.add_argument("--max-processes", type=int, default=None, metavar="N",
                   help="process cap per worker (0 for no cap; default 64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--isolate", action="store_true",
                   help="run each worker isolated, as --roster always does (another user, "
                        "its own PID and mount namespaces; see README 'For instructors')")
    p.add_argument("--user", default=None,
                   help="the unprivileged user isolated workers run as when grading as root "
                        "(default: nobody)")
    p.add_argument("--unsafe", action="store_true",
                   help="grade a --roster even where workers cannot be isolated (the grades "
                        "are then marked as forgeable)")
    p.add_argument("--hide", action="append", default=[], metavar="DIR",
                   help="a folder isolated workers must not see (repeatable; the notebooks' "
                        "folders, --out and the --json file's folder always are)")
    p.add_argument("--manifest", default=None, metavar="FILE",
                   help="the package fingerprint written by `mlc grading manifest` (default: "
                        "taken when grading starts)")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("grading", help="instructor tools for the autograder")
    gsub = p.add_subparsers(dest="action", required=True)
    g = gsub.add_parser("manifest", help="record the package's file hashes, checked by "
                        "isolated grading (--manifest)")
    g.add_argument("--out", default="mlc-manifest.json", help="the JSON file to write")
    g.set_defaults(func=cmd_grading_manifest)

    p = sub.add_parser("autograder", help="build a course-platform autograder bundle")
    asub = p.add_subparsers(dest="action", required=True)
    b = asub.add_parser("build", help="write the bundle (setup.sh, run_autograder) of a unit")
    b.add_argument("unit", help="the unit, e.g. 00, 00_welcome or welcome")
    b.add_argument("--out", default="autograder.zip", help="the zip to write")
    b.set_defaults(func=cmd_autograder)

    p = sub.add_parser("release", help="write exercises/ from solutions/")
    p.add_argument("--check", action="store_true",
                   help="only check that exercises/ is up to date (exit 1 if not)")
    p.add_argument("--solutions", default="solutions")
    p.add_argument("--exercises", default="exercises")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("dist", help="run a script on P MPI ranks (MPICH's mpiexec)")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("run", help="mlc dist run -n P script.py [args]")
    d.add_argument("-n", type=int, default=2, help="number of ranks (default 2)")
    d.add_argument("script", help="the Python script every rank runs")
    d.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    d.set_defaults(func=cmd_dist)

    p = sub.add_parser("deploy", help="inspect a saved mlc.deploy artifact")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("report", help="mlc deploy report PATH: the artifact's report card")
    d.add_argument("path", help="the folder artifact.save wrote")
    d.add_argument("--batch", type=int, default=64, help="the larger batch timed (64)")
    d.add_argument("--digits", action="store_true",
                   help="accuracy on the digits test set (a digits classifier)")
    d.set_defaults(func=cmd_deploy)

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
