"""``python run.py`` that SIGKILLs itself once, at a chosen point of one stage, as a pre-empted
cluster job dies (no handler runs, nothing is flushed):

    python -m tests.reliability.killer STAGE N MARKER [run.py overrides ...]

STAGE: ``classifier`` / ``gan`` (the Nth training batch, over every classifier), ``cgma`` (after
the Nth cache shard is written), ``evaluate`` (the Nth test batch). When MARKER exists the run is
not killed: the rerun of the same command goes through.
"""

import os
import signal
import sys
from pathlib import Path


def kill_at(owner: type, method: str, when: str, n: int, marker: Path) -> None:
    """Patch ``owner.method`` to SIGKILL the process before / after its ``n``th call."""
    original, calls = getattr(owner, method), [0]

    def maybe_kill() -> None:
        calls[0] += 1
        if calls[0] == n and not marker.exists():
            marker.write_text(f"killed {when} {owner.__name__}.{method} call {n}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    def wrapped(*args, **kwargs):
        if when == "before":
            maybe_kill()
        result = original(*args, **kwargs)
        if when == "after":
            maybe_kill()
        return result

    setattr(owner, method, wrapped)


def main() -> None:
    stage, n, marker, *overrides = sys.argv[1:]
    from cgmagan.data.cgma_store import CGMAStore
    from cgmagan.models.classifier_module import ClassifierModule
    from cgmagan.models.evaluation_module import ExplanationEvaluator
    from cgmagan.models.gan_module import CGMAGAN

    point = {"classifier": (ClassifierModule, "training_step", "before"), "gan": (CGMAGAN, "training_step", "before"),
             "cgma": (CGMAStore, "write_shard", "after"), "evaluate": (ExplanationEvaluator, "test_step", "before")}[stage]  # fmt: skip
    kill_at(*point, int(n), Path(marker))
    sys.argv = ["run.py", *overrides]
    from cgmagan.cli import main as run

    run()


if __name__ == "__main__":
    main()
