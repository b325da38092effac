"""Suspends a command midway as Ctrl-Z does and wakes it: waits until FILE
has at least LINES lines (a --metrics file), sends SIGTSTP to the command
(the terminal's signal to its group, which the ranks left), checks that it
and every process it started (their groups: the ranks) are stopped, sends
SIGCONT, checks that they run again, then waits for the command and prints
"stopped N", "continued N" (N: the processes) and "exit STATUS".

  suspend_midway.py FILE LINES -- COMMAND...

Fails after 120 s without LINES lines or without all stopped."""
import os, signal, subprocess, sys, time

args = sys.argv[1:]
split = args.index("--")
path, lines = args[0], int(args[1])
command = args[split + 1:]


def state(pid):
    try:
        text = open(f"/proc/{pid}/stat").read()
    except OSError:
        return "gone"
    return text[text.rindex(")") + 2]


def family(root):
    """root and its descendants, from /proc's parent links."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parents[int(entry)] = int(text[text.rindex(")") + 2:].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def wait_for(predicate, what):
    deadline = time.time() + 120
    while not predicate():
        if time.time() > deadline:
            sys.exit(f"suspend_midway: {what} within 120 s")
        time.sleep(0.05)


proc = subprocess.Popen(command)
wait_for(lambda: os.path.exists(path) and sum(1 for _ in open(path)) >= lines,
         f"{path} has no {lines} lines")
procs = family(proc.pid)
os.kill(proc.pid, signal.SIGTSTP)
wait_for(lambda: all(state(p) == "T" for p in procs), f"not all of {procs} stopped")
print(f"stopped {len(procs)}", flush=True)
os.kill(proc.pid, signal.SIGCONT)
wait_for(lambda: all(state(p) != "T" for p in procs), f"not all of {procs} continued")
print(f"continued {len(procs)}", flush=True)
print(f"exit {proc.wait()}", flush=True)
