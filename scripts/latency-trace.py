#!/usr/bin/env python3
"""Where a sequential signature's time goes: a per-request trace of a fresh localnet.

    scripts/latency-trace.py [--bin DIR] [--requests N] [--curve C] [--dir D]

Starts a fresh 5-node localnet (`permafrost localnet up`), warms it with 300 signatures, then
runs `permafrost-load` one request at a time under `perf record` with four kernel tracepoints:
the scheduler's switches and wake-ups, and entry to and exit from `fdatasync`. Nothing in the
binaries is changed or instrumented. A request is the time from the load tool's HTTP request
(its `writev`) to the coordinator's response (the coordinator's next `writev`): the
coordinator writes nothing else with `writev`, and one request is in flight at a time.

For each request it reports what happened inside that window:
  sync_max     the longest time a node spent in one `fdatasync` within it (each signer syncs
               its journal once before its share leaves; on one disk, three signers' syncs
               queue)
  syncs        how many node syncs overlapped it
  runq         time the processes' main threads (the node and coordinator loops) spent
               runnable but waiting for a core, summed over the processes
  cpu_loops    CPU time of those main threads, summed
  cpu_checkpt  CPU time of the keystores' checkpoint threads
  cpu_other    CPU time of everything else but the load tool (kernel threads, other programs)
averaged over bands of requests ranked by latency, then the slowest requests one by one, and
the distribution of the syncs themselves.

Needs `perf` and the right to trace the kernel (root, or kernel.perf_event_paranoid <= -1).
The trace costs CPU: latencies under it are higher than without it; compare bands within one
run, not with an untraced run. Release binaries are looked for in target/release unless
--bin names a directory holding `permafrost` and `permafrost-load`.
"""

import argparse
import bisect
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENTS = (
    "sched:sched_switch,sched:sched_wakeup,"
    "syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync,syscalls:sys_enter_writev"
)
LINE = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")


def fail(message):
    sys.exit(f"latency-trace: {message}")


def localnet_processes(directory):
    """pid -> 'coordinator' or 'nodeN', for the localnet processes serving `directory`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in argv]
        if len(argv) < 4 or not argv[1].startswith("internal-"):
            continue
        config = Path(argv[3])
        if str(config).startswith(str(directory)):
            found[int(entry.name)] = config.parent.name
    return found


def parse(trace_text, processes):
    """Requests as (start, end), and the intervals the report is made of."""
    coordinator = next(p for p, name in processes.items() if name == "coordinator")
    # The load tool: the process whose main thread is named after it (its HTTP requests go out
    # from its runtime's worker threads).
    load = {int(m.group(2)) for m in map(LINE.match, trace_text.splitlines())
            if m and m.group(1) == "permafrost-load"}
    requests, pending = [], None
    woken = {}
    waiting = collections.defaultdict(list)  # tid -> runnable intervals
    on_cpu = {}
    ran = collections.defaultdict(list)  # (tid, comm) -> running intervals
    syncing = {}
    syncs = collections.defaultdict(list)  # pid -> fdatasync intervals
    pid_of = {}
    for line in trace_text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        comm, pid, tid, cpu, at, event, rest = m.groups()
        pid, tid, cpu, at = int(pid), int(tid), int(cpu), float(at)
        pid_of[tid] = pid
        if event == "syscalls:sys_enter_writev":
            if pid == coordinator:
                if pending is not None:
                    requests.append((pending, at))
                    pending = None
            elif pid in load and pending is None:
                pending = at
        elif event == "syscalls:sys_enter_fdatasync":
            syncing[tid] = at
        elif event == "syscalls:sys_exit_fdatasync":
            if tid in syncing:
                syncs[pid].append((syncing.pop(tid), at))
        elif event == "sched:sched_wakeup":
            woken.setdefault(int(re.search(r" pid=(\d+)", rest).group(1)), at)
        elif event == "sched:sched_switch":
            previous = int(re.search(r"prev_pid=(\d+)", rest).group(1))
            state = re.search(r"prev_state=(\S+)", rest).group(1)
            following = int(re.search(r"next_pid=(\d+)", rest).group(1))
            following_comm = re.search(r"next_comm=(.*?) next_pid", rest).group(1)
            if cpu in on_cpu:
                running_tid, running_comm, since = on_cpu.pop(cpu)
                ran[(running_tid, running_comm)].append((since, at))
            if previous != 0 and state.startswith("R"):
                woken[previous] = at  # preempted: runnable from now on
            if following != 0:
                on_cpu[cpu] = (following, following_comm, at)
                if following in woken:
                    waiting[following].append((woken.pop(following), at))
    return requests, waiting, ran, syncs, pid_of, load


class Intervals:
    """Sorted intervals, and how much of them falls in a window."""

    def __init__(self, intervals):
        self.intervals = sorted(intervals)
        self.starts = [s for s, _ in self.intervals]
        self.longest = max((e - s for s, e in self.intervals), default=0.0)

    def within(self, a, b):
        i = bisect.bisect_left(self.starts, a - self.longest)
        while i < len(self.intervals) and self.intervals[i][0] < b:
            s, e = self.intervals[i]
            if e > a:
                yield max(s, a), min(e, b)
            i += 1

    def overlap(self, a, b):
        return sum(e - s for s, e in self.within(a, b))


def report(requests, waiting, ran, syncs, pid_of, load, processes):
    coordinator = next(p for p, name in processes.items() if name == "coordinator")
    nodes = [p for p in processes if p != coordinator]
    node_syncs = {p: Intervals(syncs[p]) for p in nodes}
    runnable = {p: Intervals(waiting[p]) for p in processes}
    kinds = collections.defaultdict(list)
    for (tid, comm), intervals in ran.items():
        if tid in processes:
            kinds["cpu_loops"].extend(intervals)
        elif comm.startswith("keystore-check"):
            kinds["cpu_checkpt"].extend(intervals)
        elif pid_of.get(tid) in processes:
            kinds["cpu_loops"].extend(intervals)  # other threads of the node and coordinator
        elif pid_of.get(tid) in load:
            continue  # the load tool: the client, not the system
        else:
            kinds["cpu_other"].extend(intervals)
    cpu = {k: Intervals(kinds[k]) for k in ("cpu_loops", "cpu_checkpt", "cpu_other")}
    others = collections.defaultdict(list)  # comm -> intervals, for cpu_other's breakdown
    for (tid, comm), intervals in ran.items():
        if tid not in processes and pid_of.get(tid) not in set(processes) | load \
                and not comm.startswith("keystore-check"):
            others[f"{re.sub(r'[/:][0-9]+.*$', '', comm)} (thread {tid})"].extend(intervals)
    rows, windows = [], []
    for a, b in requests[5:]:
        windows.append((a, b))
        each = [max((e - s for s, e in node_syncs[p].within(a, b)), default=0.0) for p in nodes]
        rows.append(
            (
                b - a,
                {
                    "sync_max": max(each),
                    "syncs": sum(len(list(node_syncs[p].within(a, b))) for p in nodes),
                    "runq": sum(runnable[p].overlap(a, b) for p in processes),
                    "cpu_loops": cpu["cpu_loops"].overlap(a, b),
                    "cpu_checkpt": cpu["cpu_checkpt"].overlap(a, b),
                    "cpu_other": cpu["cpu_other"].overlap(a, b),
                },
            )
        )
    if len(rows) < 100:
        fail(f"only {len(rows)} requests were recognised in the trace")
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    rows = [rows[i] for i in order]
    windows = [windows[i] for i in order]
    n = len(rows)

    def ms(value, key=""):
        return f"{value:5.2f}" if key == "syncs" else f"{1e3 * value:5.2f}"

    def quantile(values, q):
        return values[min(len(values) - 1, int(len(values) * q))]

    latencies = [latency for latency, _ in rows]
    print(f"{n} requests traced; latency p50 {1e3 * quantile(latencies, .5):.2f} ms, "
          f"p99 {1e3 * quantile(latencies, .99):.2f} ms (under the trace)")
    keys = list(rows[0][1])
    print(f"{'band (ms, mean)':>16} {'n':>5} {'latency':>8} " + " ".join(f"{k:>11}" for k in keys))
    for label, lo, hi in (("p45-p55", .45, .55), ("p90-p95", .90, .95), ("p98-p99", .98, .99),
                          ("slowest 1%", .99, 1.0)):
        band = rows[int(n * lo):max(int(n * lo) + 1, int(n * hi))]
        mean = lambda k: sum(r[k] for _, r in band) / len(band)
        print(f"{label:>16} {len(band):5d} {ms(sum(l for l, _ in band) / len(band)):>8} "
              + " ".join(f"{ms(mean(k), k):>11}" for k in keys))
    print("slowest requests:")
    for latency, r in rows[-10:]:
        print(f"{'':>16} {'':>5} {ms(latency):>8} " + " ".join(f"{ms(r[k], k):>11}" for k in keys))
    slow = rows[int(n * .99):]
    slow_windows = windows[int(n * .99):]
    seen = collections.Counter()
    for comm, intervals in others.items():
        measured = Intervals(intervals)
        seen[comm] = sum(measured.overlap(a, b) for a, b in slow_windows)
    print("cpu_other in the slowest 1 %, by command (ms per request): " + ", ".join(
        f"{comm} {1e3 * t / len(slow):.2f}" for comm, t in seen.most_common(5) if t > 0))
    every = sorted(e - s for p in nodes for s, e in syncs[p])
    if every:
        print(f"one node's fdatasync ({len(every)}): p50 {1e3 * quantile(every, .5):.2f}, "
              f"p90 {1e3 * quantile(every, .9):.2f}, p99 {1e3 * quantile(every, .99):.2f}, "
              f"max {1e3 * every[-1]:.2f} ms")
    slowest = sorted(r["sync_max"] for _, r in rows)
    over = lambda limit: 100 * sum(x > limit for x in slowest) / n
    print(f"the slowest sync in a request: p50 {1e3 * quantile(slowest, .5):.2f}, "
          f"p99 {1e3 * quantile(slowest, .99):.2f} ms; over 1 / 2 ms in {over(.001):.1f} % / "
          f"{over(.002):.1f} % of requests")
    rest = sorted(latency - r["sync_max"] for latency, r in rows)
    print(f"latency less its slowest sync: p50 {1e3 * quantile(rest, .5):.2f}, "
          f"p99 {1e3 * quantile(rest, .99):.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", type=Path, default=Path(__file__).resolve().parent.parent / "target" / "release")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--curve", default="secp256k1")
    parser.add_argument("--dir", type=Path, help="the localnet's directory (default: a fresh temporary one)")
    args = parser.parse_args()
    permafrost, load = args.bin / "permafrost", args.bin / "permafrost-load"
    for binary in (permafrost, load):
        if not os.access(binary, os.X_OK):
            fail(f"{binary} is missing: build with `cargo build --release -p permafrost-cli -p permafrost-benches --bins`")
    if shutil.which("perf") is None:
        fail("perf is not installed")
    directory = (args.dir or Path(tempfile.mkdtemp(prefix="permafrost-trace-"))).resolve()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    localnet = subprocess.Popen(
        [permafrost, "localnet", "up", "--nodes", "5", "--dir", directory, "--api-port", "0"],
        stdout=subprocess.DEVNULL, stderr=open(directory.parent / f"{directory.name}.log", "w"))
    try:
        deadline = time.monotonic() + 120
        while not (directory / "localnet.json").exists():
            if localnet.poll() is not None or time.monotonic() > deadline:
                fail(f"the localnet did not come up (see {directory.parent / directory.name}.log)")
            time.sleep(0.2)
        base = [load, "--localnet", directory, "--in-process", "2", "--threshold", "3", "--curve", args.curve]
        subprocess.run(base + ["--requests", "300"], check=True, stdout=subprocess.DEVNULL)
        processes = localnet_processes(directory)
        if sorted(processes.values()) != ["coordinator"] + [f"node{i}" for i in range(1, 6)]:
            fail(f"cannot find the localnet's six processes: {processes}")
        data = directory / "trace.data"
        subprocess.run(["perf", "record", "-q", "-o", data, "-a", "-e", EVENTS, "--"] + base
                       + ["--requests", str(args.requests)], check=True, stdout=subprocess.DEVNULL)
        text = subprocess.run(["perf", "script", "-i", data, "-F", "comm,pid,tid,cpu,time,event,trace"],
                              check=True, capture_output=True, text=True).stdout
        report(*parse(text, processes), processes)
    finally:
        localnet.send_signal(signal.SIGINT)
        localnet.wait(timeout=60)
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
