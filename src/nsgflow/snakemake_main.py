"""Snakemake's command line as ``nsgflow run`` starts it, with a Ctrl-C that stops the run once.

``nsgflow run`` starts this module with Ctrl-C (SIGINT) blocked
(:func:`nsgflow.cli._run_snakemake`); it takes Ctrl-C once its imports are
done, so a Ctrl-C while Python or Snakemake start is held until then and
ends the run quietly instead of with the traceback of an interrupted import.
The first SIGINT stops the run; later ones (nsgflow sends each of its own on,
so one Ctrl-C may arrive twice) do not interrupt the stopping of its jobs.
"""

import os
import signal
import sys
import threading
from types import FrameType

from snakemake.cli import main as snakemake_main
from snakemake.logging import ColorizingTextHandler

#: Code that catches a KeyboardInterrupt and goes on: Snakemake's text log handler ignores one
#: raised while it writes, which would lose the Ctrl-C and let the run go on to its end.
SWALLOWS_INTERRUPT = (ColorizingTextHandler.emit.__code__,)
#: Seconds after which a Ctrl-C that came within such code is taken again.
RETRY_S = 0.05


def _within(frame: FrameType | None, codes: tuple) -> bool:
    """Whether ``frame`` or a frame that called it runs one of ``codes``."""
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def stop(signum: int, frame: FrameType | None) -> None:
    """SIGINT's handler: raise KeyboardInterrupt once, where nothing ignores it."""
    if _within(frame, SWALLOWS_INTERRUPT):
        threading.Timer(RETRY_S, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    raise KeyboardInterrupt


def main() -> None:
    """Run Snakemake's command line on ``sys.argv``; exit 130 once stopped by Ctrl-C."""
    sys.argv[0] = "snakemake"  # the command it records
    try:
        signal.signal(signal.SIGINT, stop)  # even if started with it ignored
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        snakemake_main()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
