"""``hack/bench/run SCENARIO [--n N] [--json FILE]`` — run one scenario, or ``all`` of them in turn."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import report
from .options import RESULTS_DIR, SCENARIOS, Options, sizes_for

Runner = Callable[[Any, Any, Options], tuple[dict[str, Any], list[dict[str, Any]]]]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number or a comma-separated list") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive")
    return sizes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hack/bench/run",
        description="helmops benchmarks against the helm binary itself; figures are printed and written as JSON",
    )
    p.add_argument("scenario", choices=(*SCENARIOS, "all"))
    p.add_argument("--n", type=_sizes, default=None, metavar="N[,N...]",
                   help="size(s): HelmApps (fanout: clusters); default per scenario")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="where the JSON goes (default hack/bench/results/<scenario>.json; not with 'all')")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--helm-concurrency", type=int, default=4,
                   help="HELMOPS_HELM_CONCURRENCY, and the baseline's xargs -P (default 4, the controller's)")
    p.add_argument("--workers", type=int, default=None,
                   help="HELMOPS_RECONCILER_WORKERS (default: twice the helm concurrency)")
    p.add_argument("--resync-seconds", type=float, default=45.0,
                   help="steady: HELMOPS_RESYNC_PERIOD (seconds) of the restarted controller (default 45)")
    p.add_argument("--polling-interval", type=int, default=15, help="poll: pollingInterval seconds (default 15)")
    p.add_argument("--repeat", type=int, default=1,
                   help="throughput: repetitions per N (baseline and helmops alternate; medians reported)")
    p.add_argument("--src", default=None, metavar="REV",
                   help="run the controller from a git archive of helmops/ at REV (e.g. HEAD) instead of the "
                        "working tree, so edits in progress do not change what is measured")
    p.add_argument("--controller-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for every helmops run the scenario starts (repeatable)")
    p.add_argument("--flux-arg", action="append", default=[], metavar="ARG",
                   help="vs-flux: extra argument for both Flux controllers, e.g. --flux-arg=--kube-api-qps=500 "
                        "(repeatable)")
    p.add_argument("--sides", default=",".join(Options.sides), metavar="SIDE[,SIDE...]",
                   help="vs-flux: which sides run, in this order (default: all of helmops, helm, flux_chart, "
                        "flux_chartref)")
    p.add_argument("--no-resync", action="store_true",
                   help="vs-flux: no steady-state pass (saves a resync period per controller side)")
    p.add_argument("--profile-dir", type=Path, default=None, metavar="DIR",
                   help="run each controller under cProfile and write DIR/<controller>.prof when it stops "
                        "(inflates its CPU figures: for finding where time goes, not for the table)")
    p.add_argument("--force", action="store_true",
                   help="run fanout/poll even when the controller looks like it lacks the feature")
    return p


def options(argv: Sequence[str] | None = None) -> list[Options]:
    """One :class:`Options` per scenario to run (several for ``all``)."""
    p = parser()
    a = p.parse_args(argv)
    if a.scenario == "all" and a.json is not None:
        p.error("--json names one file; with 'all' each scenario writes <results-dir>/<scenario>.json")
    extra_env = dict(item.split("=", 1) for item in a.controller_env if "=" in item)
    if len(extra_env) != len(a.controller_env):
        p.error("--controller-env takes KEY=VALUE")
    sides = tuple(x.strip() for x in a.sides.split(",") if x.strip())
    if not sides or any(x not in Options.sides for x in sides):
        p.error(f"--sides takes a comma-separated subset of {', '.join(Options.sides)}")
    if a.helm_concurrency < 1 or a.repeat < 1 or (a.workers is not None and a.workers < 1):
        p.error("--helm-concurrency, --workers and --repeat must be at least 1")
    names = SCENARIOS if a.scenario == "all" else (a.scenario,)
    out = []
    for name in names:
        out.append(Options(
            scenario=name,
            sizes=sizes_for(name, a.n),
            json_path=a.json or report.default_json_path(a.results_dir, name),
            results_dir=a.results_dir,
            helm_concurrency=a.helm_concurrency,
            workers=a.workers or 2 * a.helm_concurrency,
            resync_seconds=a.resync_seconds,
            polling_interval=a.polling_interval,
            force=a.force,
            repeat=a.repeat,
            src=a.src,
            controller_env=tuple(sorted(extra_env.items())),
            flux_args=tuple(a.flux_arg),
            sides=sides,
            profile_dir=a.profile_dir,
            no_resync=a.no_resync,
        ))
    return out


def runner(name: str) -> tuple[Runner, bool]:
    """The scenario's entry point, and whether its stack needs an HTTP chart repo too."""
    if name == "throughput":
        from . import throughput
        return throughput.run, False
    if name == "steady":
        from . import steady
        return steady.run, False
    if name == "fanout":
        from . import fanout
        return fanout.run, False
    if name == "poll":
        from . import poll
        return poll.run, False
    if name == "curve":
        from . import curve
        return curve.run, False
    if name == "helm-cost":
        from . import helmcost
        return helmcost.run, False
    if name == "vs-flux":
        from . import vsflux
        return vsflux.run, True
    if name == "drift":
        from . import drift
        return drift.run, False
    if name == "api-cost":
        from . import apicost
        return apicost.run, False
    raise ValueError(f"unknown scenario {name!r}")


def run_scenario(opts: Options) -> int:
    import tempfile

    from support.tools import ensure_all

    from . import stack

    tools = ensure_all()
    with tempfile.TemporaryDirectory(prefix="helmops-bench-src-") as tmp:
        src, rev = None, None
        if opts.src:
            src = Path(tmp)
            rev = stack.snapshot(opts.src, src)
            stack.say(f"controller runs from {opts.src} = {rev} (git archive in {src})")
        versions = stack.versions(tools, rev)
        fn, with_repo = runner(opts.scenario)
        print(f"\n== {opts.scenario} (sizes {', '.join(map(str, opts.sizes))}; {stack.cpus()} CPUs; "
              f"load {stack.loadavg()}) ==", flush=True)
        code = 0
        skip = _skip_reason(opts, (src / "helmops" / "controller") if src else None)
        if skip and not opts.force:
            figures: dict[str, Any] = {"skipped": skip}
            runs: list[dict[str, Any]] = []
            print(f"skipped: {skip}")
        else:
            try:
                with stack.stack(tools, opts.scenario, with_repo=with_repo, src=src,
                                 controller_env=dict(opts.controller_env), profile_dir=opts.profile_dir) as st:
                    figures, runs = fn(tools, st, opts)
                if opts.controller_env:
                    figures["controller_env"] = dict(opts.controller_env)
            except Exception as exc:
                traceback.print_exc()
                figures, runs, code = {"error": f"{type(exc).__name__}: {exc}"}, [], 1
    if any("error" in r for r in runs) or "error" in figures:
        code = 1
    figures.setdefault("load_at_end", stack.loadavg())
    doc = report.document(opts.scenario, opts.largest, stack.cpus(), versions, figures, runs)
    report.write_json(opts.json_path, doc)
    print(f"wrote {opts.json_path}", flush=True)
    return code


def _skip_reason(opts: Options, controller_dir: Path | None) -> str | None:
    if opts.scenario == "fanout":
        from .fanout import unsupported
        return unsupported(controller_dir)
    if opts.scenario == "poll":
        from .poll import unsupported
        return unsupported(controller_dir)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    import dataclasses
    import signal
    import subprocess

    from support.tools import REPO_ROOT

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the stacks' cleanup, unlike the default SIGTERM

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # a background job inherits SIGINT ignored; be stoppable anyway
    code = 0
    all_opts = options(argv)
    if all_opts[0].src:  # one commit for every scenario, even if the branch moves while they run
        sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", f"{all_opts[0].src}^{{commit}}"],
                             capture_output=True, text=True, check=True).stdout.strip()
        all_opts = [dataclasses.replace(o, src=sha) for o in all_opts]
    for opts in all_opts:
        code |= run_scenario(opts)
    return code


if __name__ == "__main__":
    sys.exit(main())
