"""The paper's tables, each from one command: six recipes over eight shared sweeps.

    python -m cgmagan.reproduce small                   # make reproduce-small: embedded data, CPU
    python -m cgmagan.reproduce small --recipe sanity   # one recipe: only the sweeps it reads
    python -m cgmagan.reproduce small --tables-only     # the tables again from finished runs
    python -m cgmagan.reproduce paper -- hydra/launcher=slurm hydra.launcher.partition=gpu

A sweep is one Hydra multirun over the seeds (3 by default: GAN training is not deterministic)
into ``<runs>/<variant>/<sweep>/``; a rerun skips the jobs that finished (``skip_finished``), so an
interrupted reproduction continues where it stopped, and jobs share the classifier and CGMA
caches. A recipe reads the runs of the sweeps it needs and writes ``<out>/<variant>/<recipe>.md``
(mean ± std over seeds, the commands that made it) and ``.png``; ``summary.md`` gathers the
headline numbers and says which of the paper's claims held. Combinations flagged at evaluation
(classifier near chance, or all-zero targets) are left out of every mean, and counted.
"""

from cgmagan.reproduce.cli import main
from cgmagan.reproduce.recipes import RECIPES
from cgmagan.reproduce.sweeps import SWEEPS, VARIANTS

__all__ = ["RECIPES", "SWEEPS", "VARIANTS", "main"]
