"""Checks that a run ended early ended at one step: the "ended after step N"
line of LOG, the last step of the METRICS file and the step of the
checkpoint's trainer.json are the same N."""
import json, re, sys

log, metrics, trainer = sys.argv[1:]
said = int(re.search(r"ended after step (\d+) of", open(log).read()).group(1))
last = [json.loads(line)["step"] for line in open(metrics)][-1]
saved = json.load(open(trainer))["step"]
if said == last == saved:
    print("the checkpoint, the metrics and the log end at the same step")
else:
    print(f"log {said}, metrics {last}, checkpoint {saved}")
