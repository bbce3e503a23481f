"""Shared test set-up: a private model cache, a headless plotting backend, fixed seeds."""

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or write the user's ~/.cache/llm-lab (DESIGN §4: the cache is never required)."""
    old = os.environ.get("LLMLAB_CACHE")
    os.environ["LLMLAB_CACHE"] = str(tmp_path_factory.mktemp("llmlab-cache"))
    yield
    if old is None:
        os.environ.pop("LLMLAB_CACHE", None)
    else:
        os.environ["LLMLAB_CACHE"] = old


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)


def pytest_configure(config):
    """One torch thread for the whole suite: the test models are tiny, a second thread saves little and,
    on a busy 2-core machine, makes steps many times slower while the threads wait for each other."""
    import torch

    torch.set_num_threads(1)
