"""Engine benchmark: pp512, tg128 and the app's streaming speed over native decoding.

    .venv/bin/python bench/engine_bench.py            # the starter model, 2048-token runs included
    .venv/bin/python bench/engine_bench.py -m PATH --lengths 128,512 --repeats 4

It is `assistant bench` with four alternating native/stream pairs per length (native runs in
the runner process, next to the model; the stream is timed where the app receives it); the
ratio printed is the median of the per-pair ratios, so one noisy run does not decide it.
"""

import sys

from assistant.cli.main import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--repeats" not in args:
        args += ["--repeats", "4"]
    sys.exit(main(["bench", *args]))
