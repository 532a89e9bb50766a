"""The frozen-prefix feature cache (train/models/prefix_cache.py): exact, bounded, never stale."""

from __future__ import annotations

import copy

import pytest
import torch

from msmine.train.config import ModelConfig
from msmine.train.models import build_model
from msmine.train.models.prefix_cache import (
    PrefixCache,
    cache_stats,
    clear_prefix_caches,
    enable_prefix_cache,
)

SIZE = (64, 96)


def _model(task: str, freeze: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(task=task, backbone="lite0", input_size=SIZE, freeze_stages=freeze,
                                   decoder_channels=16))


def _loss(out) -> torch.Tensor:
    return sum(t.float().pow(2).mean() for branch in out.values()
               for t in (branch.values() if isinstance(branch, dict) else [branch]))


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_prefix_caches()
    yield
    clear_prefix_caches()


@pytest.mark.parametrize("task,freeze", [("segment", 3), ("detect", 7)])
def test_cached_forward_and_gradients_equal_uncached(one_thread, task, freeze):
    # In float64, so that "equal" can be tight: the uncached prefix runs the batch, the cache each
    # sample alone, and in float32 that rounding difference (1e-7) is amplified by the train-mode
    # batch norms of the small test batch into gradients that differ by over 100 % on some CPUs
    # (parameters whose gradient is nearly zero); in float64 they agree to 1e-9.
    plain = _model(task, freeze).double()
    cached = copy.deepcopy(plain)
    assert enable_prefix_cache(cached, 64) == 2  # both streams
    v, t = torch.rand(3, 3, *SIZE, dtype=torch.float64), torch.rand(3, 1, *SIZE, dtype=torch.float64)
    for mode in ("train", "eval", "train"):
        plain.train(mode == "train")
        cached.train(mode == "train")
        a, b = _loss(plain(v, t)), _loss(cached(v, t))
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
        if mode == "train":
            a.backward()
            b.backward()
            for (name, pa), pb in zip(plain.named_parameters(), cached.parameters()):
                assert (pa.grad is None) == (pb.grad is None), name
                if pa.grad is not None:
                    assert (pa.grad - pb.grad).norm() <= 1e-9 * pa.grad.norm() + 1e-12, name
            plain.zero_grad()
            cached.zero_grad()
    stats = cache_stats()
    assert stats["misses"] == 6  # 3 samples x 2 streams, computed once
    assert stats["hits"] == 12  # the next two passes


def test_a_batch_mixing_new_and_seen_samples_computes_only_the_new(one_thread):
    model = _model("detect", 7)
    enable_prefix_cache(model, 64)
    model.eval()
    v, t = torch.rand(4, 3, *SIZE), torch.rand(4, 1, *SIZE)
    with torch.no_grad():
        model(v[:2], t[:2])
        mixed = model(torch.cat([v[3:], v[:1], v[2:3]]), torch.cat([t[3:], t[:1], t[2:3]]))
        reference = copy.deepcopy(model)
        enable_prefix_cache(reference, 0)
        expected = reference(torch.cat([v[3:], v[:1], v[2:3]]), torch.cat([t[3:], t[:1], t[2:3]]))
    assert cache_stats()["misses"] == 2 * 4 and cache_stats()["hits"] == 2 * 1
    assert torch.allclose(_loss(mixed), _loss(expected), rtol=1e-5, atol=1e-7)


def test_a_cached_value_does_not_depend_on_the_batch_it_first_came_in(one_thread):
    """A sample first seen in a batch of 16 (scoring, evaluation) or alone caches the same bits, so
    results do not depend on what the process ran before (oneDNN's kernels differ by batch size)."""
    from msmine.train.models import prefix_cache

    model = _model("detect", 7)
    enable_prefix_cache(model, 64)
    model.eval()
    v, t = torch.rand(16, 3, *SIZE), torch.rand(16, 1, *SIZE)
    with torch.no_grad():
        model(v, t)
        batched = dict(prefix_cache._CACHE.entries)
        clear_prefix_caches()
        model(v[5:6], t[5:6])
    alone = prefix_cache._CACHE.entries
    assert len(batched) == 32 and len(alone) == 2  # 16 samples x 2 streams; then sample 5's two streams
    for key, row in alone.items():
        assert all(torch.equal(a, b) for a, b in zip(row, batched[key]))


def test_other_frozen_weights_never_reuse_entries(one_thread):
    a = _model("detect", 7, seed=0)
    b = _model("detect", 7, seed=1)  # ImageNet weights are not loaded here: the two prefixes differ
    for m in (a, b):
        enable_prefix_cache(m, 64)
        m.eval()
    v, t = torch.rand(2, 3, *SIZE), torch.rand(2, 1, *SIZE)
    with torch.no_grad():
        a(v, t)
        out_b = b(v, t)
        assert cache_stats()["hits"] == 0
        b.load_state_dict(a.state_dict())  # now b's frozen weights equal a's: a's entries serve b
        out_b2 = b(v, t)
        assert cache_stats()["hits"] == 4
        enable_prefix_cache(b, 0)
        assert torch.equal(_loss(b(v, t)), _loss(out_b2))
        assert not torch.equal(_loss(out_b), _loss(out_b2))


def test_the_cache_is_bounded_least_recently_used_first():
    cache = PrefixCache(max_bytes=3 * 400)
    for key in (b"a", b"b", b"c"):
        cache.put(key, (torch.zeros(100),))  # 400 bytes each
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"d", (torch.zeros(100),))
    assert cache.get(b"b") is None and cache.get(b"a") is not None and cache.get(b"d") is not None
    assert cache.bytes == 1200
    cache.put(b"huge", (torch.zeros(1000),))  # larger than the whole cache: not kept, nothing dropped
    assert cache.get(b"huge") is None and len(cache.entries) == 3


def test_tracing_bypasses_the_cache(one_thread):
    model = _model("detect", 7)
    enable_prefix_cache(model, 64)
    model.eval()
    v, t = torch.rand(1, 3, *SIZE), torch.rand(1, 1, *SIZE)
    class Fused(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, a, b):
            return self.inner(a, b)["fused"]["logits"]

    with torch.no_grad():
        torch.jit.trace(Fused(model), (v, t), check_trace=False)
    assert cache_stats() == {"entries": 0, "bytes": 0, "hits": 0, "misses": 0}


def test_enable_counts_only_frozen_lite_streams():
    assert enable_prefix_cache(_model("detect", 0), 64) == 0
    small = build_model(ModelConfig(task="detect", backbone="small", input_size=SIZE))
    assert enable_prefix_cache(small, 64) == 0


def test_one_bound_holds_for_both_streams_together(one_thread):
    model = _model("detect", 7)
    enable_prefix_cache(model, 1)  # 1 MiB for the whole process
    model.eval()
    with torch.no_grad():
        for _ in range(8):  # 64 entries of ~34 KB: over 1 MiB per stream alone
            model(torch.rand(4, 3, *SIZE), torch.rand(4, 1, *SIZE))
    stats = cache_stats()
    assert stats["misses"] == 2 * 32
    assert 0 < stats["bytes"] <= 2**20 and stats["entries"] < 2 * 32  # some dropped to stay within it
