"""`python -m assistant.engine.runner FD`: the runner process (started by the app, not by people).

FD is this process's end of a socket pair; its stderr is already the runner's log file.
"""

# llama.cpp's libraries load first, before anything imports numpy: a numpy wheel that brings its own
# C++ runtime, loaded first, made a CUDA build of ggml crash (SIGSEGV in std::ostream) while loading.
import llama_cpp  # noqa: F401,I001

import logging
import sys
from multiprocessing.connection import Connection

from assistant.engine.runner.limits import harden_process
from common.logs import debug_enabled


def main() -> None:
    harden_process()
    logging.basicConfig(level=logging.DEBUG if debug_enabled() else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s runner %(process)d %(levelname)s %(name)s: %(message)s")
    from assistant.engine.runner.server import RunnerServer

    RunnerServer(Connection(int(sys.argv[1]))).serve()


if __name__ == "__main__":
    main()
