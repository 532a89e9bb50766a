"""From ``train.data`` samples to model batches.

``PreparedPairs`` letterboxes every pair to the model input once (optionally cached in memory, so
an active-learning run decodes each JPEG once), then applies the paired augmentation per access
with a generator seeded by (seed, epoch, index): runs are reproducible with any worker count.
"""

from __future__ import annotations

import numpy as np
import torch

BRANCHES = ("visible", "thermal", "fused")


class PreparedPairs(torch.utils.data.Dataset):
    def __init__(self, dataset, input_size, train: bool, seed: int = 0, cache: bool = True,
                 augment: bool = True, expand_max: float = 2.0, crop: bool = True):
        from msmine.train.data.augment import PairAugment

        self.dataset = dataset
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.train = train
        self.seed = seed
        self.epoch = 0
        self._letterbox = PairAugment(self.input_size, train=False)
        self._augment = PairAugment(self.input_size, train=True, expand_max=expand_max, crop=crop) if train and augment else None
        self._cache: dict[int, object] | None = {} if cache else None
        self.original_hw: dict[int, tuple[int, int]] = {}  # index -> (H, W) before the letterbox

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def prepared(self, index: int):
        """The letterboxed (not augmented) sample at ``index``."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        raw = self.dataset[index]
        self.original_hw[index] = tuple(raw.visible.shape[:2])
        sample = self._letterbox(raw, np.random.default_rng(0))
        if self._cache is not None:
            self._cache[index] = sample
        return sample

    def warm_cache(self, progress: bool = False) -> None:
        """Decode everything now (before DataLoader workers fork, so they share it)."""
        indices = range(len(self))
        if progress:
            from msmine.train.progress import progress_bar

            indices = progress_bar(indices, desc="loading pairs")
        for i in indices:
            self.prepared(i)

    def image_hw(self, index: int) -> tuple[int, int]:
        """(H, W) of the original pair (to map predictions back)."""
        if index not in self.original_hw:
            from msmine.train.data.imageio import image_size

            self.original_hw[index] = tuple(image_size(self.dataset.record(index).visible))
        return self.original_hw[index]

    def __getitem__(self, key):
        """``index`` or ``(epoch, index)`` -> (index, sample); the augmentation is seeded by both."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        sample = self.prepared(index)
        if self._augment is not None:
            rng = np.random.default_rng([self.seed, epoch, index])
            sample = self._augment(sample, rng)
        return index, sample


def mask_pixel_counts(pairs, num_classes: int) -> np.ndarray:
    """Pixels of each class over the letterboxed (not augmented) masks of ``pairs``; 255 is ignored.

    ``pairs``: a :class:`PreparedPairs` or a view of one that has ``prepared(i)``, else any dataset of
    ``(index, sample)``.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for i in range(len(pairs)):
        sample = pairs.prepared(i) if hasattr(pairs, "prepared") else pairs[i][1]
        if sample.mask is None:
            continue
        values = np.asarray(sample.mask).ravel()
        counts += np.bincount(values[values < num_classes], minlength=num_classes)[:num_classes]
    return counts


class EpochBatchSampler:
    """Endless batches of ``(epoch, index)`` keys; each epoch is a permutation seeded by (seed, epoch).

    One DataLoader (and one set of workers) serves every epoch of a ``Trainer.train`` call.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start_epoch: int = 0):
        self.size = size
        self.batch_size = min(batch_size, size)
        self.seed = seed
        self.start_epoch = start_epoch

    @property
    def batches_per_epoch(self) -> int:
        return max(1, self.size // self.batch_size)

    def __iter__(self):
        epoch = self.start_epoch
        while True:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
            for j in range(self.batches_per_epoch):
                chunk = order[j * self.batch_size : (j + 1) * self.batch_size]
                yield [(epoch, int(i)) for i in chunk]
            epoch += 1


def collate(items) -> dict:
    """List of (index, PairSample) -> batch of uint8 tensors, normalised boxes and masks."""
    indices = [i for i, _ in items]
    samples = [s for _, s in items]
    h, w = samples[0].visible.shape[:2]
    scale = np.array([w, h, w, h], np.float32)
    batch = {
        "index": indices,
        "ids": [s.id for s in samples],
        "visible": torch.from_numpy(np.stack([s.visible for s in samples])),
        "thermal": torch.from_numpy(np.stack([s.thermal.reshape(h, w, 1) for s in samples])),
        "boxes": {b: [torch.from_numpy(s.boxes[b] / scale).float() for s in samples] for b in BRANCHES},
        "labels": {b: [torch.from_numpy(s.labels[b]).long() for s in samples] for b in BRANCHES},
        "mask": None,
    }
    if samples[0].mask is not None:
        batch["mask"] = torch.from_numpy(np.stack([s.mask for s in samples]))
    return batch


def model_inputs(batch: dict, device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 NHWC -> float NCHW in [0, 1] on ``device`` (transfer as uint8, convert there)."""
    v = batch["visible"].to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    t = batch["thermal"].to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    return v.contiguous(), t.contiguous()


class IndexedSubset(torch.utils.data.Dataset):
    """The pairs of ``base`` at ``indices``; items keep the base index (so scores map back)."""

    def __init__(self, base, indices):
        self.base = base
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def image_hw(self, index: int) -> tuple[int, int]:
        return self.base.image_hw(index)

    def prepared(self, i: int):
        """The letterboxed sample of the subset's ``i``-th pair."""
        return self.base.prepared(self.indices[i])

    @property
    def dataset(self):
        return self.base.dataset

    def __getitem__(self, key):
        if isinstance(key, tuple):
            return self.base[(key[0], self.indices[key[1]])]
        return self.base[self.indices[key]]


def evaluation_view(pairs: PreparedPairs) -> PreparedPairs:
    """The same pairs without augmentation, sharing the cache of ``pairs``."""
    view = PreparedPairs.__new__(PreparedPairs)
    view.__dict__.update(pairs.__dict__)
    view.train = False
    view._augment = None
    return view
