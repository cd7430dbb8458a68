import pytest
import torch

from byzantium.training.data import load_dataset


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
