"""Promise: a user error (missing or too small dataset, unknown name, impossible setting) stops
`python run.py` with exit code 2 and a message that says what to change, before any training and
with no traceback (an unknown config option is Hydra's own error: exit 1, the options listed)."""

import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_error_is_a_clear_message_and_exit_2_before_any_work(tmp_path, case):
    overrides, message = CASES[case]
    fixtures.animals10(tmp_path / "data" / "animals10", per_class=1)
    cmd = [sys.executable, str(ROOT / "run.py"), *TINY, *overrides, "print_config=false",
           f"paths.cache_dir={tmp_path / 'cache'}", f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == (1 if case == "unknown conditioning" else 2), output[-3000:]
    assert message in output, output[-3000:]
    assert "Traceback" not in output and "training classifier" not in output
    assert not (tmp_path / "cache" / "classifiers").exists() or not any((tmp_path / "cache" / "classifiers").iterdir())
