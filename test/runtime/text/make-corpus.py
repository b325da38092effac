#!/usr/bin/env python3
"""Writes the tokenizer test corpus: LINES lines (default 12000) mixing
English, Chinese and other scripts, code, numbers, emoji, runs of spaces and
blank lines, special tokens written in text, text that NFC changes, and the
cases the Qwen3 / Llama 3 pre-tokenizer regexes treat specially
(contractions in both cases, digit runs of every length, whitespace before
letters and at line ends, Unicode spaces).

Deterministic: the same LINES and SEED give the same bytes on any machine
(its own generator, no `random`). Lines are split on '\\n' only; a line may
end in '\\r'.

Usage: make-corpus.py OUT [--lines N] [--seed S]
"""
import argparse

ENGLISH = ("the quick brown fox jumps over a lazy dog while we are reading "
           "tokenizers split text into pieces before byte pair encoding merges "
           "them Hello World Python Tokenizer MERGE Rank hello HELLO why "
           "internationalization antidisestablishmentarianism e-mail naïve café "
           "résumé coöperate Zürich São Paulo").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE",
                "'VE", "'vE", "'M", "'LL", "'Ll", "'D"]
CHINESE = ["你好，世界", "我们今天学习分词器。", "机器学习和深度学习", "北京是中国的首都", "这是一个测试",
           "大语言模型的训练需要大量的数据", "自然语言处理", "「引号」和《书名号》", "一二三四五六七八九十",
           "中文文本没有空格所以整句是一个片段直到标点符号出现为止", "繁體中文測試", "１２３全角数字",
           "ＡＢＣ全角字母"]
OTHER_SCRIPTS = ["Привет, мир! Как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם",
                 "नमस्ते दुनिया", "こんにちは世界、カタカナ", "안녕하세요 세계", "สวัสดีชาวโลก",
                 "Tiếng Việt có dấu", "Ελληνικά ΣΊΣΥΦΟΣ", "ქართული", "Հայերեն"]
CODE = ["def f(x):\treturn x**2  # square", "if (a && b) { return c[i]; }", "for i in range(10):",
        "    print(f\"{i:>4}\")", "int main(int argc, char **argv) {", "x += y->z; // C++",
        "SELECT * FROM users WHERE id = 42;", "<div class=\"a\">text</div>", "$ ls -la | grep '.py'",
        "let v: Vec<u32> = vec![1, 2, 3];", "{\"key\": [1, 2.5, null, true]}", "a_b_c = __init__()",
        "    \treturn;", "std::vector<int>{}", "0x1F600 0b1010 1e-9 3.14159", "\\n\\t\\\\"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🤖", "🎉🎉🎉", "✨", "🧑🏿‍💻", "☕", "🏳️‍🌈", "©®™"]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
            "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|reserved_special_token_5|>", "<|im_start", "<|im_end|",
            "im_end|>", "<||>", "<|fim_prefix|>",
            # the added tokens of the flags variant (make-variants.js)
            "<mask>", " <mask>", "  <mask>x", "[SEP]", "[SEP]  y", "a [SEP] ", " <both>  ", "\t<both>\t",
            "word", " word ", "password", "words", "_word", "word_", "(word)", "éword", "wordé",
            "cafe\u0301", "café", "CAFÉ", "fox jumps", "the fox jumps over", "xfox jumps"]
NFC_CASES = ["e\u0301", "A\u030a", "\u212b", "\u1100\u1161\u11a8", "o\u0308\u0301", "\u0344",
             "n\u0303o", "\u00e9", "ﬁ ligature", "Å", "\u0958", "\u2126"]
SPACES = [" ", "  ", "   ", "    ", "        ", "\t", "\t\t", " \t ", "\u00a0", "\u3000", "\u2009",
          "\u180e", "\u0085", "\u000b", "\u000c", "\u200b", "\u2028", "\u202f", "\r", " \r "]
PUNCT = [".", ",", "!", "?", "...", "!!", "?!", ";", ":", "—", "–", "-", "(", ")", "\"", "'", "``",
         "''", "*", "#", "@", "&", "%", "…", "。", "，", "！"]


class Lcg:
    """64-bit linear congruential generator (Knuth's MMIX constants)."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def below(self, n):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return (self.state >> 33) % n

    def pick(self, items):
        return items[self.below(len(items))]


def digits(rng):
    n = 1 + rng.below(12)
    return "".join(str(rng.below(10)) for _ in range(n))


def english(rng):
    words = []
    for _ in range(1 + rng.below(10)):
        w = rng.pick(ENGLISH)
        r = rng.below(10)
        if r == 0:
            w = w.upper()
        elif r == 1:
            w += rng.pick(CONTRACTIONS)
        elif r == 2:
            w = rng.pick(CONTRACTIONS) + w
        words.append(w)
    sep = rng.pick([" ", " ", " ", "  ", " \t"])
    return sep.join(words) + rng.pick(PUNCT)


def numbers(rng):
    forms = [lambda: digits(rng), lambda: digits(rng) + "." + digits(rng),
             lambda: "{:,}".format(rng.below(10 ** 9)), lambda: "a" + digits(rng) + "b" + digits(rng),
             lambda: "20{:02d}-{:02d}-{:02d}".format(rng.below(30), 1 + rng.below(12), 1 + rng.below(28)),
             lambda: " ".join(digits(rng) for _ in range(3)), lambda: "-" + digits(rng) + "%",
             lambda: "٣٤٥ ۱۲۳ ४५६ ⅷ ½ ²"]
    return rng.pick(forms)()


def long_piece(rng):
    forms = [lambda: "a" * (200 + rng.below(200)), lambda: " " * (50 + rng.below(300)),
             lambda: rng.pick(CHINESE) * (3 + rng.below(8)), lambda: "!" * (10 + rng.below(100)),
             lambda: "ab" * (100 + rng.below(100)), lambda: "0123456789" * (5 + rng.below(10))]
    return rng.pick(forms)()


def fragment(rng):
    kinds = [english, english, english, lambda r: r.pick(CHINESE), lambda r: r.pick(OTHER_SCRIPTS),
             lambda r: r.pick(CODE), numbers, numbers, lambda r: r.pick(EMOJI),
             lambda r: r.pick(SPECIALS), lambda r: r.pick(SPECIALS) + english(r),
             lambda r: r.pick(NFC_CASES), lambda r: r.pick(PUNCT) * (1 + r.below(3)),
             lambda r: r.pick(CONTRACTIONS), lambda r: r.pick(SPACES) + r.pick(ENGLISH)]
    if rng.below(200) == 0:
        return long_piece(rng)
    return rng.pick(kinds)(rng)


def line(rng):
    r = rng.below(40)
    if r == 0:
        return ""  # blank lines: runs of newlines in the whole text
    if r == 1:
        return rng.pick(SPACES) * (1 + rng.below(4))  # whitespace only
    parts = [fragment(rng) for _ in range(1 + rng.below(4))]
    text = ""
    for part in parts:
        text += part + rng.pick(["", " ", " ", " ", "  ", rng.pick(SPACES)])
    if rng.below(8) == 0:
        text = rng.pick(SPACES) + text  # leading whitespace
    if rng.below(8) == 0:
        text += rng.pick([" ", "   ", "\t", " \t"])  # trailing whitespace
    if rng.below(30) == 0:
        text += "\r"
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--lines", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = Lcg(args.seed)
    lines = [line(rng) for _ in range(args.lines)]
    with open(args.out, "w", encoding="utf-8", newline="") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
