"""Promise: a user error (missing or too small dataset, unknown name, impossible setting) stops
`python run.py` with exit code 2 and a message that says what to change, before any training and
with no traceback (an unknown config option is Hydra's own error: exit 1, the options listed)."""

import subprocess
import sys
from pathlib import Path

from tests import fixtures
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "missing dataset": (["combinations.train=[food11/small_vgg]", "combinations.unseen=[]"],
                        "Food-11 was not found in its published layout"),
    "dataset too small": (["combinations.train=[animals10/small_vgg]", "combinations.unseen=[]", "dataset=animals10"],
                          "is too small for its splits"),
    "unknown backbone": (["combinations.train=[digits/no_such_net]"], "unknown backbone 'no_such_net' in combinations; choose one of"),
    "unknown conditioning": (["conditioning=csft"], "Could not find 'conditioning/csft'"),  # Hydra's own, exit 1
    "k above the layers": (["cgma.k=99"], "cgma.k=99 but digits/small_vgg has 8 conv layers"),
    "map size": (["gan.map_size=7"], "gan.map_size"),
}  # fmt: skip


def test_a_user_error_is_a_clear_message_and_exit_2_before_any_work(tmp_path):
    """Every case at once, each its own ``run.py`` in its own folders (the suite's time: each is
    mostly the process's start)."""
    running = {}
    for i, (case, (overrides, _)) in enumerate(CASES.items()):
        folder = tmp_path / str(i)
        fixtures.animals10(folder / "data" / "animals10", per_class=1)
        cmd = [sys.executable, str(ROOT / "run.py"), *TINY, *overrides, "print_config=false", f"paths.cache_dir={folder / 'cache'}",
               f"paths.data_dir={folder / 'data'}", f"hydra.run.dir={folder / 'run'}"]  # fmt: skip
        running[case] = (folder, subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for case, (folder, process) in running.items():
        output, _ = process.communicate(timeout=300)
        message = CASES[case][1]
        assert process.returncode == (1 if case == "unknown conditioning" else 2), (case, output[-3000:])
        assert message in output, (case, output[-3000:])
        assert "Traceback" not in output and "training classifier" not in output, case
        classifiers = folder / "cache" / "classifiers"
        assert not classifiers.exists() or not any(classifiers.iterdir()), case
