"""The `backend` fixture: a test that takes it runs once on the Python loops and once on the
compiled ones. The compiled run is skipped only where no C++ toolchain is installed; with one, a
failed build fails the test (backend=compiled raises)."""
import pytest

from dynamics import compiled


@pytest.fixture(params=["python", "compiled"])
def backend(request):
    if request.param == "compiled" and compiled.missing_toolchain():
        pytest.skip(f"the compiled loops cannot be built here: {compiled.missing_toolchain()}")
    compiled.use(request.param)
    yield request.param
    compiled.use("auto")
