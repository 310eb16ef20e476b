"""Shared fixtures. `backend`: a test that takes it runs once on the Python loops and once on the
compiled ones; the compiled run is skipped only where no C++ toolchain is installed (with one, a
failed build fails the test: backend=compiled raises). `refused`: bad input to `dynamics train`."""
import pytest

from dynamics.models import compiled
from dynamics.cli import main


@pytest.fixture(params=["python", "compiled"])
def backend(request):
    if request.param == "compiled" and compiled.missing_toolchain():
        pytest.skip(f"the compiled loops cannot be built here: {compiled.missing_toolchain()}")
    compiled.use(request.param)
    yield request.param
    compiled.use("auto")


@pytest.fixture
def refused(tmp_path, capsys):
    """`refused(*args)` runs `dynamics train ARGS` as bad input: exit status 2, one line on stderr,
    nothing written; it returns that line."""
    def train(*args):
        with pytest.raises(SystemExit) as e:
            main(["train", *args, "--maxiters", "5", "--out-dir", str(tmp_path), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2, err
        assert len(err.splitlines()) == 1, err
        assert list(tmp_path.iterdir()) == []
        return err
    return train
