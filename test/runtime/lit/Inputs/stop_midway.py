"""Runs a command and signals it once it has trained: waits until FILE has
at least LINES lines (a --metrics file), sends SIGNAL to the command, or to
the pid written in --target (another rank), then waits for the command and
prints "exit N" (N: its status, 128 + the signal that killed it).

  stop_midway.py SIGNAL FILE LINES [--target PIDFILE] [--repeat] -- COMMAND...

--repeat sends it again 50 ms later (unless the command has ended). Fails
after 300 s without LINES lines, or (killing it) when the command has not
ended 240 s after the signal."""
import os, signal, subprocess, sys, time

args = sys.argv[1:]
split = args.index("--")
options, command = args[:split], args[split + 1:]
sig = getattr(signal, "SIG" + options[0])
path, lines = options[1], int(options[2])
target = options[options.index("--target") + 1] if "--target" in options else None
repeat = "--repeat" in options

# lit's workers ignore SIGINT, and a child would inherit that (mtrun keeps a
# signal ignored at its start ignored, as nohup asks).
signal.signal(signal.SIGINT, signal.SIG_DFL)
proc = subprocess.Popen(command)
deadline = time.time() + 300
while True:
    if os.path.exists(path) and sum(1 for _ in open(path)) >= lines:
        break
    if proc.poll() is not None or time.time() > deadline:
        sys.exit(f"stop_midway: {path} has fewer than {lines} lines "
                 f"(command status {proc.poll()})")
    time.sleep(0.05)
pid = int(open(target).read()) if target else proc.pid
os.kill(pid, sig)
if repeat:
    time.sleep(0.05)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
try:
    status = proc.wait(timeout=240)
except subprocess.TimeoutExpired:  # a run that did not stop must not hang CI
    proc.kill()
    sys.exit(f"stop_midway: the command did not end within 240 s of {options[0]}")
print("exit", 128 - status if status < 0 else status, flush=True)
