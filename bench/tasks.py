#!/usr/bin/env python3
"""Where threads ran: samples /proc/PID/task/TID/stat of the processes named
on the command line every INTERVAL seconds until SIGTERM or SIGINT, then
prints one JSON object: per thread, its samples' CPUs (field 39,
processor), scheduling policies (field 41: 0 normal, 5 SCHED_IDLE) and
states (R running or runnable, S sleeping), and over the sampling the CPU
time it used (utime + stime, fields 14 and 15), its time on a CPU and
waiting on a run queue (/proc/PID/task/TID/schedstat: run_s, wait_s) and
the times it was preempted (nonvoluntary_ctxt_switches).

    tasks.py INTERVAL LABEL:PID[/TID]...

A LABEL:PID/TID names one thread. For the single threads, "joint" counts
the samples by the CPUs they were on together ("poll=0 snd=1 rcv=1").

A bench helper of bench/bimodal.sh (needs nothing but /proc).
"""
import json
import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid, tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields follow the last ")".
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state).
    return {
        "state": rest[0],
        "cpu_ticks": int(rest[14 - 3]) + int(rest[15 - 3]),
        "processor": int(rest[39 - 3]),
        "policy": int(rest[41 - 3]),
    }


def sched(pid, tid):
    """(on-CPU s, run-queue wait s, involuntary switches) of a thread."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            run, wait, _ = f.read().split()
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            inv = next(int(l.split()[1]) for l in f if l.startswith("nonvoluntary_ctxt_switches"))
    except (OSError, ValueError, StopIteration):
        return None
    return (int(run) / 1e9, int(wait) / 1e9, inv)


def main():
    interval = float(sys.argv[1])
    procs = [a.split(":", 1) for a in sys.argv[2:]]
    joint = {}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    threads = {}  # (label, tid) -> record
    t0 = time.monotonic()
    while not stop:
        at = []
        for label, pid in procs:
            if "/" in pid:
                pid, tid = pid.split("/")
                tids = [tid]
            else:
                try:
                    tids = os.listdir(f"/proc/{pid}/task")
                except OSError:
                    continue
            for tid in tids:
                st = stat(pid, tid)
                if st is None:
                    continue
                r = threads.setdefault((label, tid), {
                    "label": label, "tid": int(tid), "first_ticks": st["cpu_ticks"],
                    "cpus": {}, "policies": {}, "states": {}, "running_cpus": {}, "samples": 0,
                })
                r["samples"] += 1
                sc = sched(pid, tid)
                if sc:
                    r.setdefault("first_sched", sc)
                    r["last_sched"] = sc
                r["last_ticks"] = st["cpu_ticks"]
                c = str(st["processor"])
                r["cpus"][c] = r["cpus"].get(c, 0) + 1
                p = str(st["policy"])
                r["policies"][p] = r["policies"].get(p, 0) + 1
                r["states"][st["state"]] = r["states"].get(st["state"], 0) + 1
                if st["state"] == "R":
                    r["running_cpus"][c] = r["running_cpus"].get(c, 0) + 1
                if len(tids) == 1:
                    at.append(f"{label}={c}{st['state']}")
        if at:
            k = " ".join(at)
            joint[k] = joint.get(k, 0) + 1
        time.sleep(interval)
    out = []
    for r in threads.values():
        r["cpu_s"] = (r.pop("last_ticks") - r.pop("first_ticks")) / TICK
        a, b = r.pop("first_sched", None), r.pop("last_sched", None)
        if a and b:
            r["run_s"], r["wait_s"], r["preempted"] = b[0] - a[0], b[1] - a[1], b[2] - a[2]
        out.append(r)
    print(json.dumps({"seconds": time.monotonic() - t0, "threads": out, "joint": joint}))


if __name__ == "__main__":
    main()
