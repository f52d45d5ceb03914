"""A random-image dataset for tests of loop-level behaviour (training, caching, export): nothing to learn."""

import torch

from kdcore import data as kdata


def synthetic(n_train=320, n_test=64, shape=(1, 28, 28), name="mnist-sample", seed=0) -> kdata.Dataset:
    g = torch.Generator().manual_seed(seed)
    return kdata.Dataset(
        name=name,
        train_x=torch.randint(0, 256, (n_train, *shape), generator=g, dtype=torch.uint8),
        train_y=torch.randint(0, 10, (n_train,), generator=g),
        test_x=torch.randint(0, 256, (n_test, *shape), generator=g, dtype=torch.uint8),
        test_y=torch.randint(0, 10, (n_test,), generator=g),
        classes=tuple(str(i) for i in range(10)),
        mean=(0.5,) * shape[0],
        std=(0.29,) * shape[0],
    )
