import pytest
import torch

from byzantium.training.datasets import load_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models: intra-op threads only add contention on the shared box (13x slower measured)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def logistic():
    return load_dataset("logistic", train_size=2000, seed=0, dim=20, num_classes=2)


@pytest.fixture(scope="session")
def mnist1d():
    # MNIST-1D (10 classes, length-40 signals), 3000 training / 1000 test examples
    return load_dataset("mnist1d", train_size=3000, seed=0)
