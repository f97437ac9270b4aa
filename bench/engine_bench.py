"""Engine benchmark: pp512, tg128 and the app's streaming speed over native decoding.

    .venv/bin/python bench/engine_bench.py            # the starter model, 2048-token runs included
    .venv/bin/python bench/engine_bench.py -m PATH --lengths 128,512 --repeats 2

It is `assistant bench` with repeats on by default, so the ratio is not one noisy run.
"""

import sys

from assistant.cli.main import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--repeats" not in args:
        args += ["--repeats", "2"]
    sys.exit(main(["bench", *args]))
