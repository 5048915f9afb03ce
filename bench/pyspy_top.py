"""The hottest frames of a py-spy profile, as text: `py-spy record --format raw` in, two tables out.

    py-spy record --pid PID --duration 20 --format raw -o profile.txt
    python bench/pyspy_top.py profile.txt [--top 15]

"self" is where the samples were (the innermost frame), "inclusive" counts a function once per
sample wherever it is on the stack (so the callers of the hot code show up). Frames are grouped by
function and file, without line numbers.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
# Shorten site-packages and interpreter paths to the package-relative part.
PREFIX = re.compile(r"^.*/(site-packages|lib/python3\.\d+|rt-[^/]+|main)/")


def frame_name(frame: str) -> str:
    """`func (file:line)` as `func (short/file.py)`."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({PREFIX.sub('', match['file'])})"


def tally(lines: list[str]) -> tuple[Counter, Counter, int]:
    """Self and inclusive sample counts per frame, and the total."""
    own, inclusive, total = Counter(), Counter(), 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame_name(f) for f in stack.split(";") if f.strip()]
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    return own, inclusive, total


def main(argv: list[str] | None = None) -> int:
    """Print the top self and inclusive frames."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    own, inclusive, total = tally(args.profile.read_text().splitlines())
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"{title} (% of {total} samples)")
        for name, n in counter.most_common(args.top):
            print(f"  {n / total * 100:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
