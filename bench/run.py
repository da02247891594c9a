"""Run qpuflow's benchmarks and record the results.

    python bench/run.py                      # every benchmark, 5 repeats -> bench/results/*.json + bench/RESULTS.md
    python bench/run.py --only NAME [NAME]   # some of them (RESULTS.md still lists every JSON present)
    python bench/run.py --repeats 3
    python bench/run.py --quick              # small sizes, 1 repeat -> bench/results/quick/ (smoke test)
    python bench/run.py --list

Exit status: 0 when every benchmark ran (missed targets are results, recorded with their
reason); 1 when a benchmark raised an error (recorded too, as ERROR).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from benchlib.core import REGISTRY, Benchmark  # noqa: E402
from benchlib.machine import machine_info  # noqa: E402
from benchlib.report import load_results, render_markdown, write_json  # noqa: E402
from benchlib.study import REPO  # noqa: E402

RESULTS = BENCH / "results"
QUICK_RESULTS = RESULTS / "quick"


def discover() -> dict[str, Benchmark]:
    """Import every module in bench/benchmarks/; each registers its benchmarks on import."""
    import benchmarks

    for module in pkgutil.iter_modules(benchmarks.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"benchmarks.{module.name}")
    return REGISTRY


def parse_args(argv: list[str] | None, names: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=names, help="run only these benchmarks")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per benchmark (default 5; some cap it)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and 1 repeat; writes bench/results/quick/, never the recorded results")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def run_one(bench: Benchmark, *, repeats: int, quick: bool, out_dir: Path) -> dict:
    print(f"== {bench.name}: {bench.title} ({bench.repeats_for(repeats, quick)} repeat(s))", flush=True)
    machine = machine_info(REPO)
    with tempfile.TemporaryDirectory(prefix=f"qpuflow-bench-{bench.name}-") as scratch:
        record = bench.run(repeats=repeats, quick=quick, scratch=Path(scratch))
    record = {"name": record.pop("name"), "title": record.pop("title"), "machine": machine, **record}
    write_json(out_dir / f"{bench.name}.json", record)
    for row in record["targets"]:
        print(f"   {row['result']:<12} {row['label']}: {row['measured']}"
              + (f"  ({row['reason']})" if row["result"] != "PASS" else ""), flush=True)
    if record["error"]:
        print(f"   ERROR {record['error']}", flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    registry = discover()
    args = parse_args(argv, sorted(registry))
    if args.list:
        for name, bench in sorted(registry.items()):
            print(f"{name:<20} {bench.title}")
        return 0
    out_dir = QUICK_RESULTS if args.quick else RESULTS
    selected = args.only or sorted(registry)
    records = [run_one(registry[name], repeats=args.repeats, quick=args.quick, out_dir=out_dir) for name in selected]
    page = out_dir / "RESULTS.md" if args.quick else BENCH / "RESULTS.md"
    title = "qpuflow benchmarks (quick smoke run: NOT the recorded results)" if args.quick else "qpuflow benchmarks"
    page.write_text(render_markdown(load_results(out_dir), title=title,
                                    command="python bench/run.py" + (" --quick" if args.quick else ""),
                                    source=str(out_dir.relative_to(REPO))))
    print(f"Wrote {page.relative_to(REPO)} and {len(records)} JSON file(s) in {out_dir.relative_to(REPO)}/")
    return 1 if any(r["error"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
