#!/usr/bin/env python3
"""The tables of bench/net.sh from its rows, one per measure, setup and run:

    RUN KEY SETUP FIGURE WORK LOSS CPU_S

FIGURE is "-" for a measure that failed; WORK is Gbit received (TCP) or
millions of datagrams delivered (UDP), LOSS the % of the sender's UDP
datagrams not delivered, CPU_S the CPU seconds of the setup's switch process
over the measure ("-" where there is no such process or figure).

    netreport.py ROWS SETUPS...   (SETUPS: KEY=NAME, the kernel's first)

Prints the markdown: the summary table (per measure and setup: the median
figure, the median of each run's own ratio to the kernel's figure of that
run with the spread min-max, the CPU time per unit of work), then every
run's ratios.
"""
import statistics
import sys

MEASURES = [
    ("tcp1", "L2 TCP 1 stream (Gbit/s)"),
    ("tcp2", "L2 TCP 2 streams, one pair (-P 2) (Gbit/s)"),
    ("tcp2x", "L2 TCP 2 streams, two pairs a->b, c->d (Gbit/s)"),
    ("flood", "L2 RTT ping -A (µs)"),
    ("paced", "L2 RTT ping -i 0.05 (µs)"),
    ("udp64", "L2 UDP 64 B delivered (kpps, % lost)"),
    ("rtcp1", "routed TCP 1 stream (Gbit/s)"),
    ("rflood", "routed RTT ping -A (µs)"),
    ("ntcp1", "masquerade TCP 1 stream (Gbit/s)"),
]
TCP = {"tcp1", "tcp2", "tcp2x", "rtcp1", "ntcp1"}


def num(x):
    return None if x == "-" else float(x)


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def spread(v, digits=2):
    """median (min-max) of v, or "-"."""
    if not v:
        return "-"
    if len(v) == 1:
        return fmt(v[0], digits)
    return f"{fmt(statistics.median(v), digits)} ({fmt(min(v), digits)}-{fmt(max(v), digits)})"


def main():
    rows_path = sys.argv[1]
    setups = [a.split("=", 1) for a in sys.argv[2:]]
    keys = [k for k, _ in setups]
    name = dict(setups)
    # data[key][setup][run] = (figure, work, loss, cpu)
    data = {}
    runs = set()
    for line in open(rows_path):
        run, key, s, fig, work, loss, cpu = line.split()
        runs.add(int(run))
        data.setdefault(key, {}).setdefault(s, {})[int(run)] = (num(fig), num(work), num(loss), num(cpu))
    runs = sorted(runs)
    kern = keys[0]
    others = keys[1:]

    def ratios(key, s, base=kern):
        out = []
        for r in runs:
            a = data[key].get(s, {}).get(r)
            b = data[key].get(base, {}).get(r)
            if a and b and a[0] is not None and b[0]:
                out.append(a[0] / b[0])
        return out

    def figures(key, s):
        return [v[0] for v in data[key].get(s, {}).values() if v[0] is not None]

    def cpu_per_work(key, s):
        out = []
        for fig, work, _, cpu in data[key].get(s, {}).values():
            if fig is None or cpu is None or not work:
                continue
            out.append(cpu * 1000 / work if key in TCP else cpu / work)
        return out

    def figure_cell(key, s):
        f = figures(key, s)
        if not f:
            return "-"
        digits = 2 if key in TCP else 1
        cell = fmt(statistics.median(f), digits)
        if key == "udp64":
            loss = [v[2] for v in data[key].get(s, {}).values() if v[2] is not None]
            if loss:
                cell += f" ({statistics.median(loss):.0f}% lost)"
        return cell

    vs = "v" in keys and "p" in keys
    head = ["measure", name[kern]]
    for s in others:
        head += [name[s], "ratio (min-max)"]
        if s == "p" and vs:
            head.append("vs OVS")
        if s != kern:
            head.append("CPU")
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for key, title in MEASURES:
        if key not in data:
            continue
        cells = [title, figure_cell(key, kern)]
        for s in others:
            cells += [figure_cell(key, s), spread(ratios(key, s))]
            if s == "p" and vs:
                cells.append(spread(ratios(key, "p", "v")))
            c = cpu_per_work(key, s)
            cells.append(fmt(statistics.median(c), 1 if key in TCP else 2) if c and key in TCP | {"udp64"} else "")
        print("| " + " | ".join(cells) + " |")
    print()
    print(f"Figures are medians over {len(runs)} run(s); ratio = the setup's figure / the kernel's in the same")
    print("run, median of the runs with their min-max (higher is better for Gbit/s and kpps, lower for µs);")
    if vs:
        print("vs OVS = uswitch / Open vSwitch in the same run, likewise;")
    print("CPU = the switch process's CPU time (utime + stime) over the measure per unit of work: ms per")
    print("Gbit received for TCP (= ms of CPU per second at 1 Gbit/s), s per million datagrams delivered")
    print("for UDP. The kernel has none: its work is in softirq and its endpoints' system calls.")
    print()
    print("Each run's ratio to the kernel (in run order; the kernel's own figures for reference):")
    print()
    head = ["measure", name[kern]] + [name[s] for s in others]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---|" * (len(head) - 1))
    for key, title in MEASURES:
        if key not in data:
            continue
        digits = 2 if key in TCP else 1
        kf = [data[key].get(kern, {}).get(r) for r in runs]
        cells = [title, " ".join(fmt(v[0] if v else None, digits) for v in kf)]
        for s in others:
            cells.append(" ".join(
                fmt(a[0] / b[0]) if a and b and a[0] is not None and b[0] else "-"
                for a, b in ((data[key].get(s, {}).get(r), data[key].get(kern, {}).get(r)) for r in runs)))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
