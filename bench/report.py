"""bench/compare.py's figures: one row per run, medians per cell, ratios, markdown tables, JSON."""
from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GENERATOR_BUSY_PCT = 85.0  # a generator near one full core was (part of) the bottleneck
EVIDENCE = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|Exception|error", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# one run


def row(session: Any, run: Any, result: dict, before: dict, after: dict,
        emitted: dict | None) -> dict[str, Any]:
    """The figures of one run (loadgen's result + /proc deltas)."""
    wall = after["wall"] - before["wall"]
    delta = {key: after[key] - before[key] for key in ("server", "redis", "nginx", "generator", "machine")}
    frames = result["received"] + result["echoes"] + result["duplicates"]  # `message` frames written
    per_frame = lambda key: delta[key] / frames * 1e6 if frames else float("nan")
    emitter_cpu = emitted["cpu_s"] if emitted else 0.0
    ours = delta["server"] + delta["redis"] + delta["nginx"] + delta["generator"] + emitter_cpu
    failures = (sum(result["refused"].values()) + result["unacked"] + result["disconnects"]
                + result["unexpected"] + (emitted["errors"] if emitted else 0))
    return {
        "stack": session.stack.name, "path": "emitter" if run.emitter else session.path,
        "clients": session.clients, "rate": run.rate, "duration": run.duration,
        "repetition": session.repetition, "publishers": result["publishers"],
        "sent": result["sent"], "acked": result["acked"], "refused": result["refused"],
        "unacked": result["unacked"], "emitter_errors": emitted["errors"] if emitted else 0,
        "expected": result["expected"], "received": result["received"], "lost": result["lost"],
        "duplicates": result["duplicates"], "unexpected": result["unexpected"],
        "stale": result["stale"], "disconnects": result["disconnects"], "failures": failures,
        "deliveries_per_s": result["deliveries_per_s"], "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"], "max_ms": result["max_ms"], "frames": frames,
        "server_us": per_frame("server"), "redis_us": per_frame("redis"),
        "nginx_us": per_frame("nginx") if session.stack.nginx else None,
        "server_cpu_pct": delta["server"] / wall * 100, "redis_cpu_pct": delta["redis"] / wall * 100,
        "rss_per_conn_kb": session.rss_per_conn_kb, "rss_from_zero_kb": session.rss_from_zero_kb,
        "generator_cpu_pct": result["cpu_pct"], "generator_loop_p99_ms": result["loop_delay_p99_ms"],
        "emitter_cpu_s": emitter_cpu, "send_lag_max_ms": (emitted or result)["send_lag_max_ms"],
        "other_cpu_pct": max(0.0, delta["machine"] - ours) / wall * 100, "window_s": wall,
        "connect_s": session.connected.get("seconds"), "loadgen_errors": result["errors"],
        "code": session.code,
    }


def progress(r: dict) -> None:
    """One line per run on stderr, so a long run shows it is alive."""
    p99 = f"{r['p99_ms']:.1f}" if r["p99_ms"] is not None else "-"
    print(f"  {r['stack']:<8} {r['path']:<10} C={r['clients']:<5} rate={r['rate']:g}/s "
          f"rep={r['repetition']}: {r['deliveries_per_s']:.0f} dlv/s lost={r['lost']} "
          f"failures={r['failures']} p99={p99}ms server={r['server_us']:.1f}us/dlv "
          f"rss={r['rss_per_conn_kb']:.1f}kB/conn gen={r['generator_cpu_pct']:.0f}% "
          f"other={r['other_cpu_pct']:.0f}%", file=sys.stderr, flush=True)


def evidence(stack: Any, lines: int = 40) -> str:
    """The last warning/error lines of the stack's log files (what to look at after a loss)."""
    found = []
    for path in stack.log_files():
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        hits = [line for line in text.splitlines() if EVIDENCE.search(line)]
        found += [f"{Path(path).name}: {line[:400]}" for line in hits[-lines:]]
    return "\n".join(found[-lines:]) or "(no warning or error in the logs)"


def saturation_summary(stack: str, clients: int, steps: list[dict]) -> dict[str, Any]:
    """The highest passing rate of one stack and why the next one failed."""
    passing = [s for s in steps if s["passed"]]
    failing = next((s for s in steps if not s["passed"]), None)
    best = passing[-1] if passing else None
    why = None
    if failing:
        why = (f"lost {failing['lost']}" if failing["lost"] else
               f"failures {failing['failures']}" if failing["failures"] else
               f"p99 {failing['p99_ms']:.0f} ms")
        if failing.get("contended"):
            why += f" (others used {failing['other_cpu_pct']:.0f}% of a core)"
    return {"stack": stack, "clients": clients, "best_rate": best["rate"] if best else None,
            "best_deliveries_per_s": best["deliveries_per_s"] if best else None,
            "best_p99_ms": best["p99_ms"] if best else None,
            "best_server_us": best["server_us"] if best else None,
            "best_generator_cpu_pct": best["generator_cpu_pct"] if best else None,
            "failed_rate": failing["rate"] if failing else None, "failed_because": why,
            "steps": len(steps)}


# ---------------------------------------------------------------------------------------------
# summaries


def cell_key(r: dict) -> tuple:
    """What identifies a cell of the table across repetitions."""
    return (r["path"], r["clients"], r["rate"], r["stack"])


def summarize(rows: list[dict]) -> list[dict]:
    """Medians per cell over the repetitions (max: the maximum; counts: summed)."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["path"] != "saturation":
            cells.setdefault(cell_key(r), []).append(r)
    out = []
    for (path, clients, rate, stack), runs in cells.items():
        median = lambda key: statistics.median(r[key] for r in runs if r[key] is not None) \
            if any(r[key] is not None for r in runs) else None
        total = lambda key: sum(r[key] for r in runs)
        out.append({"stack": stack, "path": path, "clients": clients, "rate": rate, "runs": len(runs),
                    **{k: median(k) for k in ("deliveries_per_s", "p50_ms", "p99_ms", "server_us",
                                              "redis_us", "nginx_us", "rss_per_conn_kb",
                                              "server_cpu_pct", "other_cpu_pct")},
                    "max_ms": max((r["max_ms"] for r in runs if r["max_ms"] is not None), default=None),
                    "generator_cpu_pct": max(r["generator_cpu_pct"] for r in runs),
                    "generator_loop_p99_ms": max(r["generator_loop_p99_ms"] for r in runs),
                    "send_lag_max_ms": max(r["send_lag_max_ms"] for r in runs),
                    **{k: total(k) for k in ("lost", "expected", "duplicates", "failures",
                                             "disconnects", "unacked")}})
    order = {"direct": 0, "emitter": 1, "nginx": 2}
    stacks = {"realtime": 0, "plain": 1, "node": 2}
    return sorted(out, key=lambda s: (order.get(s["path"], 9), s["clients"], s["rate"],
                                      stacks.get(s["stack"], 9)))


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    return a / b if a is not None and b else None


def ratios(summaries: list[dict]) -> list[dict]:
    """realtime / each reference, per cell, measured in the same invocation."""
    by = {(s["path"], s["clients"], s["rate"], s["stack"]): s for s in summaries}
    out = []
    for (path, clients, rate, stack), ours in by.items():
        if stack != "realtime":
            continue
        entry = {"path": path, "clients": clients, "rate": rate}
        for ref in ("node", "plain"):
            other = by.get((path, clients, rate, ref))
            if other:
                cpu = lambda s: (s["server_us"] or 0) + (s["redis_us"] or 0)
                entry[ref] = {"server_us": ratio(ours["server_us"], other["server_us"]),
                              "server_redis_us": ratio(cpu(ours), cpu(other)),
                              "p99_ms": ratio(ours["p99_ms"], other["p99_ms"]),
                              "rss_per_conn_kb": ratio(ours["rss_per_conn_kb"], other["rss_per_conn_kb"]),
                              "deliveries_per_s": ratio(ours["deliveries_per_s"], other["deliveries_per_s"])}
        out.append(entry)
    return out


def notes(summaries: list[dict], rows: list[dict]) -> list[str]:
    """What a reader must not miss: losses, failures, a saturated generator, a late schedule."""
    out = []
    for s in summaries:
        where = f"{s['stack']} {s['path']} C={s['clients']} rate={s['rate']:g}"
        if s["lost"] or s["failures"] or s["duplicates"]:
            out.append(f"{where}: lost {s['lost']} of {s['expected']}, duplicates {s['duplicates']}, "
                       f"failures {s['failures']} (refused/unacked/disconnects/unexpected)")
        if s["generator_cpu_pct"] >= GENERATOR_BUSY_PCT:
            out.append(f"{where}: the generator used {s['generator_cpu_pct']:.0f}% of a core: "
                       "it was (part of) the bottleneck")
        if s["send_lag_max_ms"] > 100:
            out.append(f"{where}: sending fell {s['send_lag_max_ms']:.0f} ms behind schedule")
    codes = {r.get("code") for r in rows if r["stack"] == "realtime"}
    if len(codes) > 1:
        out.append(f"realtime's code changed during the run (fingerprints {sorted(codes)}): "
                   "its sessions did not all measure the same version")
    for r in rows:
        if r.get("evidence"):
            out.append(f"{r['stack']} {r['path']} C={r['clients']} rate={r['rate']:g} "
                       f"rep={r['repetition']} log lines:\n" + indent(r["evidence"]))
    return out


def indent(text: str) -> str:
    """Four spaces before every line (a code block in markdown)."""
    return "\n".join("    " + line for line in text.splitlines())


# ---------------------------------------------------------------------------------------------
# where it ran, and the whole result


def git(*args: str) -> str:
    """Output of a git command in the repository ('' if git is unavailable)."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def measured_code() -> str:
    """What realtime ran from: the checkout's commit, or the other tree `--realtime-root` named."""
    from stacks import RealtimeStack
    root = RealtimeStack.root
    return f"tree {root} (the checkout is at {code_version()})" if root else code_version()


def code_version() -> str:
    """The commit measured, and whether the working tree differed from it under realtime/."""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "realtime", "config", "wsgi.py")
    return commit + (" + uncommitted changes under realtime/ or config/" if dirty else "")


def code_fingerprint() -> str:
    """The committed trees of realtime/ and config/ plus a hash of their uncommitted diff: a session
    that started on other server code (someone editing meanwhile) gets another fingerprint, while
    commits elsewhere (docs, tests) do not change it."""
    import hashlib
    trees = [tree[:8] for tree in git("rev-parse", "HEAD:realtime", "HEAD:config").split()]
    diff = git("diff", "HEAD", "--", "realtime", "config", "wsgi.py")
    return ":".join([*trees, hashlib.sha1(diff.encode()).hexdigest()[:8]])


def version_of(argv: list[str]) -> str:
    """The first line a `--version` command prints ('' if it cannot run)."""
    if not shutil.which(argv[0]) and not Path(argv[0]).exists():
        return ""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""


def machine() -> dict[str, Any]:
    """Where this ran (the figures mean little without it)."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                 platform.processor())
    return {"cpus": os.cpu_count(), "model": model,
            "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "kernel": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "node": version_of(["node", "--version"]),
            "redis": version_of(["redis-server", "--version"]),
            "nginx": version_of(["/usr/sbin/nginx", "-v"])}


def results(bench: Any, argv: list[str] | None, seconds: float) -> dict[str, Any]:
    """Everything the run measured, as written to the JSON file."""
    summaries = summarize(bench.rows)
    plan = bench.plan
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "code": measured_code(), "argv": argv if argv is not None else sys.argv[1:],
            "seconds": seconds,
            "plan": {"cells": {str(k): v for k, v in plan.cells.items()}, "duration": plan.duration,
                     "repetitions": plan.repetitions, "publishers": plan.publishers,
                     "users": plan.users, "subscriber_client": plan.subscriber_client,
                     "emitter": plan.emitter, "nginx": plan.nginx,
                     "saturation": vars(plan.saturation) if plan.saturation else None,
                     "stacks": plan.stacks},
            "summaries": summaries, "ratios": ratios(summaries), "saturation": bench.saturation,
            "notes": notes(summaries, bench.rows), "runs": bench.rows}


# ---------------------------------------------------------------------------------------------
# markdown


def fmt(value: Any, spec: str = ".1f") -> str:
    """A cell: '-' for missing, else formatted."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec) if spec else str(value)


def markdown(headings: list[str], lines: list[list[str]], left: int = 1) -> str:
    """A markdown table with aligned columns (the first `left` to the left, the rest right)."""
    widths = [max(len(h), *(len(line[n]) for line in lines)) if lines else len(h)
              for n, h in enumerate(headings)]
    cell = lambda n, text: text.ljust(widths[n]) if n < left else text.rjust(widths[n])
    out = ["| " + " | ".join(cell(n, h) for n, h in enumerate(headings)) + " |",
           "|" + "|".join(("-" * (w + 2)) if n < left else ("-" * (w + 1) + ":")
                          for n, w in enumerate(widths)) + "|"]
    out += ["| " + " | ".join(cell(n, text) for n, text in enumerate(line)) + " |" for line in lines]
    return "\n".join(out)


def main_table(summaries: list[dict]) -> str:
    """One line per stack, path, C and rate."""
    headings = ["stack", "path", "C", "msg/s", "deliveries/s", "lost", "p50 ms", "p99 ms", "max ms",
                "server µs/dlv", "redis µs/dlv", "nginx µs/dlv", "RSS kB/conn", "gen cpu%",
                "gen lag p99 ms", "other cpu%"]
    lines = [[s["stack"], s["path"], str(s["clients"]), fmt(s["rate"], "g"),
              fmt(s["deliveries_per_s"], ".0f"), f"{s['lost']}/{s['expected']}",
              fmt(s["p50_ms"]), fmt(s["p99_ms"]), fmt(s["max_ms"], ".0f"), fmt(s["server_us"]),
              fmt(s["redis_us"]), fmt(s["nginx_us"]), fmt(s["rss_per_conn_kb"]),
              fmt(s["generator_cpu_pct"], ".0f"), fmt(s["generator_loop_p99_ms"], ".0f"),
              fmt(s["other_cpu_pct"], ".0f")] for s in summaries]
    return markdown(headings, lines, left=2)


def ratio_table(entries: list[dict]) -> str:
    """realtime / node and realtime / plain per cell (below 1.00x: realtime is better)."""
    headings = ["path", "C", "msg/s"]
    keys = [("server_us", "server µs/dlv"), ("server_redis_us", "+redis µs/dlv"), ("p99_ms", "p99"),
            ("rss_per_conn_kb", "RSS/conn")]
    for ref in ("node", "plain"):
        headings += [f"{label} vs {ref}" for _, label in keys]
    lines = []
    for e in entries:
        line = [e["path"], str(e["clients"]), fmt(e["rate"], "g")]
        for ref in ("node", "plain"):
            line += [(fmt(e[ref][k], ".2f") + "x") if ref in e and e[ref][k] is not None else "-"
                     for k, _ in keys]
        lines.append(line)
    return markdown(headings, lines)


def saturation_table(entries: list[dict]) -> str:
    """Per stack: the highest rate with no loss and p99 under the bar, and what failed next."""
    headings = ["stack", "C", "highest passing msg/s", "deliveries/s", "p99 ms", "server µs/dlv",
                "gen cpu%", "next rate", "failed because"]
    lines = [[e["stack"], str(e["clients"]), fmt(e["best_rate"], "g"),
              fmt(e["best_deliveries_per_s"], ".0f"), fmt(e["best_p99_ms"]), fmt(e["best_server_us"]),
              fmt(e["best_generator_cpu_pct"], ".0f"), fmt(e["failed_rate"], "g"),
              e["failed_because"] or f"(not reached in {e['steps']} steps)"] for e in entries]
    return markdown(headings, lines)


def render(res: dict) -> str:
    """The printed report."""
    m = res["machine"]
    parts = [f"machine: {m['cpus']} cpus ({m['model']}), load {m['load']}, {m['kernel']}, "
             f"Python {m['python']}, node {m['node']}, {m['redis']}",
             f"code: {res['code']}; {res['date']}; {res['seconds']:.0f} s",
             "", main_table(res["summaries"]), "", "realtime / reference (below 1.00x: realtime "
             "uses less / is faster):", "", ratio_table(res["ratios"])]
    if res["saturation"]:
        parts += ["", "saturation (highest rate with no loss and p99 <= 100 ms):", "",
                  saturation_table(res["saturation"])]
    parts += [f"note: {line}" for line in res["notes"]]
    return "\n".join(parts)
