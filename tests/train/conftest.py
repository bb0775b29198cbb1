import pytest

from train_fixtures import platform_config, write_demos


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("train_demos")
    return {t: write_demos(d / f"{t}.hdf5", t, n_demos=6, length=40, seed=i) for i, t in enumerate(["Lift", "Stack"])}


@pytest.fixture(scope="module")
def clips(ray_cluster, demo_files, tmp_path_factory):
    """The real clip stage over the demo files (shared by the tests of a module)."""
    from videopolicy.data.clips import build_clips

    store = tmp_path_factory.mktemp("train_store")
    return build_clips(platform_config(demo_files, store))


@pytest.fixture
def make_cfg(demo_files, clips):
    def make(model: dict | None = None, **train):
        return platform_config(demo_files, clips.path.parents[1], model, **train)

    return make
