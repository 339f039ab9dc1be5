"""Peak RSS of each path's training alone. resource's ru_maxrss is the process's peak so far, so one process running
every path cannot tell their peaks apart: bench.py runs itself once per path in a child process (--rss_of NAME),
which sets up as bench.py does (the data, the weights, one model), runs that path's first updates and nothing
else, and prints its peak RSS after the setup and after the updates on one line that the parent reads."""
import json
import subprocess
import sys

from bench_harness import fmt, peak_rss_gb, progress, table

MARK = 'PEAK_RSS '


def measure(names, script, argv, timeout=1200):
    """name -> {'setup': GB, 'peak': GB} of a child `script argv --rss_of name` per name, one after the other
    (or the failure's table cell)."""
    out = {}
    for name in names:
        progress(f'peak RSS: the updates of {name} alone, in a child process')
        try:
            done = subprocess.run([sys.executable, script, *argv, '--rss_of', name], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            out[name] = f'failed: no result in {timeout} s'
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
        last = (done.stderr.strip().splitlines() or [''])[-1][:80]
        out[name] = json.loads(lines[-1][len(MARK):]) if lines else f'failed: exit status {done.returncode}: {last}'
    return out


def report(setup_gb):
    """In the child: print the peaks, after the setup (setup_gb) and now, on the line `measure` reads."""
    print(MARK + json.dumps(dict(setup=setup_gb, peak=peak_rss_gb())), flush=True)


def rss_table(results, n_updates):
    """The children's peaks (results: measure's)."""
    rows = []
    for name, r in results.items():
        if isinstance(r, str):
            rows.append([name, r])
        else:
            rows.append([name, fmt(r['setup'], '.2f'), fmt(r['peak'], '.2f'), fmt(r['peak'] - r['setup'], '.2f')])
    print(f'PEAK RSS OF EACH PATH ALONE (a child process: bench.py\'s setup, then {n_updates} updates of that path)')
    table(['variant', 'after setup GB', 'after updates GB', 'updates added GB'], rows)
    print("after setup: the data, the written and loaded weights and one model (the one the port's paths train; the "
          "original graph")
    print("builds its own). after updates: the process's peak (ru_maxrss) once the updates ran: the optimiser, the "
          "graph and the")
    print("activations of one tower at a time.")
    print()
