"""Turn the benchmark's raw samples into bench/RESULTS.md, bench/results.png and a printed table."""
import datetime
import os

from bench.workloads import median_spread

WAYS = ("raw", "webapp", "portable", "reference")

# metric -> (target for webapp's native engine, test on (its median, reference median))
TARGETS = {
    "upload MB/s": ("≥ 5x reference", lambda w, r: r is not None and w >= 5 * r),
    "download MB/s": ("≥ 1.5x reference", lambda w, r: r is not None and w >= 1.5 * r),
    "round trip p50 us": ("≤ 0.6x reference", lambda w, r: r is not None and w <= 0.6 * r),
    "1000 concurrent: completed": ("1000 of 1000", lambda w, r: w == 1000),
    "RSS per idle connection KiB": ("≤ 32 KiB", lambda w, r: w <= 32),
}


def _higher_is_better(metric):
    return "MB/s" in metric or "completed" in metric


def _portable_target(metric):
    """The portable engine's targets: every figure at least the reference's (where the reference
    has one), 1,000 of 1,000 concurrent, upload at least 2x the reference's."""
    if metric.startswith("SCM server"):
        return "", None         # the sandbox's cost, not the tunnel's
    if metric == "upload MB/s":
        return "≥ 2x reference", lambda w, r: r is None or w >= 2 * r
    if metric == "1000 concurrent: completed":
        return "1000 of 1000", lambda w, r: w == 1000
    if _higher_is_better(metric):
        return "≥ reference", lambda w, r: r is None or w >= r
    return "≤ reference", lambda w, r: r is None or w <= r


def _fmt(value):
    if value is None:
        return "failed"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(stats):
    if stats is None:
        return "failed"
    median, low, high = stats
    if low == high:
        return _fmt(median)
    return f"{_fmt(median)} ({_fmt(low)}–{_fmt(high)})"


def _ratio(a, b):
    if a is None or b is None or b[0] == 0:
        return "–"
    return f"{a[0] / b[0]:.2f}x"


def summarise(results):
    metrics = []
    for metric, _ in results:
        if metric not in metrics:
            metrics.append(metric)
    rows = []
    for metric in metrics:
        stats = {way: median_spread(results.get((metric, way), [])) for way in WAYS}
        if not any(results.get((metric, way)) for way in WAYS):
            continue
        ref = stats["reference"][0] if stats["reference"] else None
        targets = {}
        for way, (target, check) in (("webapp", TARGETS.get(metric, ("", None))),
                                     ("portable", _portable_target(metric))):
            met = ""
            if check and results.get((metric, way)):
                met = "met" if stats[way] is not None and check(stats[way][0], ref) else "MISSED"
            targets[way] = (target, met)
        rows.append((metric, stats, targets, {w for w in stats if results.get((metric, w))}))
    return rows


def reference_name(env):
    """The tunnel compared with, by the azure-cli release installed when the benchmark ran."""
    return f"Azure CLI {env.get('azure-cli', '(unknown version)')} tunnel"


def _markdown(rows, notes, reference):
    lines = [f"| metric | raw loopback | webapp (native) | webapp (portable) | {reference} "
             "| native / reference | portable / reference | native / raw | target (native) | target (portable) |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def target(way, targets):
        text, met = targets[way]
        return text + (" — " + met if met else "")

    for metric, stats, targets, measured in rows:
        cells = {w: _cell(stats[w]) if w in measured else "–" for w in stats}
        lines.append(f"| {metric} | {cells['raw']} | {cells['webapp']} | {cells['portable']} | {cells['reference']} "
                     f"| {_ratio(stats['webapp'], stats['reference'])} "
                     f"| {_ratio(stats['portable'], stats['reference'])} | {_ratio(stats['webapp'], stats['raw'])} "
                     f"| {target('webapp', targets)} | {target('portable', targets)} |")
    if notes:
        lines += ["", "Failures:"]
        for (metric, way), whys in sorted(notes.items()):
            lines.append(f"- {way}, {metric}: {len(whys)} run(s): " + "; ".join(dict.fromkeys(whys)))
    return "\n".join(lines)


def _chart(path, rows, reference):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    picked = [r for r in rows
              if r[0] in ("upload MB/s", "download MB/s", "round trip p50 us", "round trip p99 us")
              or r[0].startswith("scp ")]
    fig, axes = plt.subplots(1, len(picked), figsize=(3.2 * max(1, len(picked)), 3.6))
    if len(picked) == 1:
        axes = [axes]
    colours = {"raw": "#9e9e9e", "webapp": "#1565c0", "portable": "#2e7d32", "reference": "#ef6c00"}
    for ax, (metric, stats, _, _) in zip(axes, picked):
        ways = list(WAYS)
        values = [stats[w][0] if stats[w] else 0 for w in ways]
        bars = ax.bar(["raw", "native", "portable", "ref."], values, color=[colours[w] for w in ways])
        for bar, w in zip(bars, ways):
            if stats[w] is None:
                ax.annotate("failed", (bar.get_x() + bar.get_width() / 2, 0), ha="center", va="bottom",
                            fontsize=8, color="#b71c1c")
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"webapp vs the {reference} vs raw loopback (median)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _cpu_budget(rows, cores):
    """What the measured CPU costs allow on this machine, where every process shares the same cores.

    Per GiB moved, the tunnel and the SCM server each spend what the table shows; the client and
    target spend what the raw way in would need. With all of it on `cores` cores, no run can go
    faster than cores / (sum of CPU seconds per GiB).
    """
    stats = {r[0]: r[1] for r in rows}
    lines = []
    for direction in ("download", "upload"):
        raw = stats.get(f"{direction} MB/s", {}).get("raw")
        ceilings = {}
        for way in ("webapp", "portable", "reference"):
            tunnel = stats.get(f"CPU s per GiB ({direction})", {}).get(way)
            scm = stats.get(f"SCM server CPU s per GiB ({direction})", {}).get(way)
            if not tunnel or not scm:
                continue
            total = tunnel[0] + scm[0]
            ceilings[way] = (tunnel[0], scm[0], cores / total * (1 << 30) / 1e6)
        if "webapp" not in ceilings or "reference" not in ceilings:
            continue
        web, ref = ceilings["webapp"], ceilings["reference"]
        lines.append(
            f"- {direction}: per GiB, the webapp tunnel spends {web[0]:.2f} CPU s and the SCM server "
            f"{web[1]:.2f} while serving it; the reference spends {ref[0]:.2f} and the SCM server "
            f"{ref[1]:.2f}. With everything on {cores} cores that caps the webapp path near "
            f"{web[2]:,.0f} MB/s and the reference path near {ref[2]:,.0f} MB/s"
            + (f" (raw loopback, no TLS at all: {raw[0]:,.0f} MB/s)." if raw else "."))
        if "portable" in ceilings:
            port = ceilings["portable"]
            lines.append(f"- {direction}, portable engine: {port[0]:.2f} CPU s per GiB in the tunnel and "
                         f"{port[1]:.2f} in the SCM server, a ceiling near {port[2]:,.0f} MB/s.")
    lines += _scm_headroom(stats)
    return lines


def _scm_headroom(stats):
    """What one core of the SCM server sustains, from its CPU cost per GiB while serving each
    client, against what that client reached: the sandbox must never be what limits a benchmark."""
    lines = []
    for direction in ("download", "upload"):
        speeds = stats.get(f"{direction} MB/s", {})
        costs = stats.get(f"SCM server CPU s per GiB ({direction})", {})
        parts = []
        for way, label in (("webapp", "webapp"), ("portable", "the portable engine"),
                           ("reference", "the reference")):
            cost, speed = costs.get(way), speeds.get(way)
            if not cost or not cost[0] or not speed or not speed[0]:
                continue
            capacity = (1 << 30) / cost[0] / 1e6
            parts.append(f"serving {label} it spends {cost[0]:.2f} CPU s per GiB, so one core of it "
                         f"sustains {capacity:,.0f} MB/s, {capacity / speed[0]:.1f}x the "
                         f"{speed[0]:,.0f} MB/s {label} reached")
        if parts:
            lines.append(f"- SCM server headroom, {direction}: " + "; ".join(parts) + ".")
    return lines


def write(out_dir, results, notes, env, args, elapsed):
    os.makedirs(out_dir, exist_ok=True)
    rows = summarise(results)
    reference = reference_name(env)
    table = _markdown(rows, notes, reference)
    chart = os.path.join(out_dir, "results.png")
    has_chart = _chart(chart, rows, reference)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = [
        "# Benchmark results",
        "",
        f"`make bench`, {when}, {elapsed / 60:.1f} minutes. Each figure is the median of {args.repeat} runs,",
        "with the spread (lowest–highest) in brackets; every run used a fresh tunnel process. All four",
        "ways in reach the same target: `raw` connects to it directly on loopback; webapp with its native",
        "engine, webapp with its portable engine (pure Python, what Windows, macOS, Linux on Arm and",
        f"Alpine run) and the {reference} go through the sandbox SCM server over verified TLS.",
        "",
        f"Bulk transfers move {args.bulk_mib} MiB; round trips are {args.rtt_count} exchanges of 64 bytes;",
        f"concurrency runs open all connections at once and allow {args.deadline:.0f} s; idle memory holds",
        f"{args.idle} connections open after one echo each; scp copies {args.scp_mib} MiB to the sandbox's sshd.",
        "",
        table,
        "",
        "## Where the time goes",
        "",
        "Everything runs on one machine: the client and target, the sandbox's SCM server (TLS and",
        "WebSocket framing, like Azure's front end) and the tunnel share the same cores, so CPU per GiB",
        "is the figure that carries over to a real network, and the MB/s figures are bounded by it:",
        "",
        *(_cpu_budget(rows, os.cpu_count() or 1) or ["- (no bulk figures)"]),
        "",
        "## Machine and versions",
        "",
    ]
    doc += [f"- {k}: {v}" for k, v in env.items()]
    notes_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
    if os.path.exists(notes_path):    # the analysis a person wrote after reading these figures
        with open(notes_path, encoding="utf-8") as f:
            doc += ["", f.read().rstrip()]
    if has_chart:
        doc += ["", "![chart](results.png)"]
    with open(os.path.join(out_dir, "RESULTS.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(doc) + "\n")
    return table
