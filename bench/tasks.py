#!/usr/bin/env python3
"""Where threads ran: samples /proc/PID/task/TID/stat of the processes named
on the command line every INTERVAL seconds until SIGTERM or SIGINT, then
prints one JSON object: per thread, its samples' CPUs (field 39,
processor), scheduling policies (field 41: 0 normal, 5 SCHED_IDLE) and
states (R running or runnable, S sleeping), and the CPU time it used
(utime + stime, fields 14 and 15) over the sampling.

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
        out.append(r)
    print(json.dumps({"seconds": time.monotonic() - t0, "threads": out, "joint": joint}))


if __name__ == "__main__":
    main()
