#!/usr/bin/env python3
"""mt-tokenize --tokenizer against Hugging Face `tokenizers`' ids
(reference-ids.js's JSON): --ids on the corpus line by line, -o on the whole
corpus (the token file's ids and vocab size), and its errors for invalid
UTF-8 and for conflicting or missing outputs. Prints the first mismatching
line with both id lists.

Usage: check-mt-tokenize.py MT_TOKENIZE MODEL_DIR CORPUS REFERENCE.json VOCAB_SIZE WORK_DIR
"""
import json
import os
import struct
import subprocess
import sys


def run(args):
    return subprocess.run(args, capture_output=True)


def main():
    tool, model_dir, corpus, reference, vocab_size, work = sys.argv[1:]
    ref = json.load(open(reference, encoding="utf-8"))
    os.makedirs(work, exist_ok=True)
    failures = []

    out = run([tool, "--tokenizer", model_dir, "--ids", corpus])
    if out.returncode != 0:
        sys.exit(f"mt-tokenize --ids failed: {out.stderr.decode()}")
    got = out.stdout.decode().split("\n")
    lines = open(corpus, encoding="utf-8", newline="").read().split("\n")
    if got[-1] == "":
        got.pop()
    if len(got) != len(ref["lines"]):
        failures.append(f"--ids printed {len(got)} lines for {len(ref['lines'])} input lines")
    for i, (mine, want) in enumerate(zip(got, ref["lines"])):
        if mine != " ".join(map(str, want)):
            failures.append(f"--ids: first mismatch at line {i + 1}: {json.dumps(lines[i], ensure_ascii=False)}\n"
                            f"  mtc:        {mine}\n  tokenizers: {' '.join(map(str, want))}")
            break

    token_file = os.path.join(work, "corpus.bin")
    out = run([tool, "--tokenizer", model_dir, corpus, "-o", token_file, "--overwrite"])
    if out.returncode != 0:
        sys.exit(f"mt-tokenize -o failed: {out.stderr.decode()}")
    data = open(token_file, "rb").read()
    magic, version, width, vocab, count = struct.unpack_from("<8sIIQQ", data)
    ids = list(struct.unpack_from(f"<{count}{'H' if width == 2 else 'I'}", data, 64))
    if vocab != int(vocab_size):
        failures.append(f"-o: the token file says vocab size {vocab}, expected {vocab_size}")
    if ids != ref["whole"]:
        first = next((i for i, (a, b) in enumerate(zip(ids, ref["whole"])) if a != b),
                     min(len(ids), len(ref["whole"])))
        failures.append(f"-o: first mismatch at token {first}: mtc {ids[first:first + 8]}, "
                        f"tokenizers {ref['whole'][first:first + 8]}")

    # --count: the token file's size, in -o's summary form (mtc train reads it).
    out = run([tool, token_file, "--count"])
    want = f"{token_file}: {count} tokens (token file, vocab size {vocab_size})"
    if out.returncode != 0 or out.stdout.decode().strip() != want:
        failures.append(f"--count: expected {want!r}, got exit {out.returncode}: "
                        f"{out.stdout.decode()}{out.stderr.decode()}")

    bad = os.path.join(work, "bad.txt")
    open(bad, "wb").write(b"fine\nalso fine\nbad \xff byte\n")
    for args, message in [
        ([bad, "--ids"], f"error: {bad}:3: not valid UTF-8 at byte 4 of the line (byte 19 of the file)"),
        ([bad, "-o", os.path.join(work, "bad.bin")], f"error: {bad}:3: not valid UTF-8 at byte 4"),
        ([corpus, "--ids", "-o", os.path.join(work, "x.bin")], "excludes"),
        ([corpus], "give -o FILE"),
        ([corpus, "--count"], 'bad magic'),
        ([corpus, "--count", "-o", os.path.join(work, "x.bin")], "excludes"),
    ]:
        out = run([tool, "--tokenizer", model_dir] + args)
        if out.returncode == 0 or message not in out.stderr.decode():
            failures.append(f"mt-tokenize {' '.join(args)}: expected an error with {message!r}, "
                            f"got exit {out.returncode}: {out.stderr.decode()}")
    if os.path.exists(os.path.join(work, "bad.bin")):
        failures.append("mt-tokenize -o wrote bad.bin for invalid text")
    if failures:
        sys.exit("\n".join(failures))
    print(f"mt-tokenize: {len(got)} lines and {len(ids)} tokens as tokenizers")


if __name__ == "__main__":
    main()
