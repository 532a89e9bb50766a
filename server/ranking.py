"""Top-K labelling batch across the fleet with near-duplicate removal by pair perceptual hash."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msmine.phash import pair_distance, to_unsigned
from msmine.server.metadata import MetadataStore
from msmine.server.records import PairFilters


@dataclass
class BatchSelection:
    upload_ids: list[str]  # chosen pairs, best score first
    skipped_duplicates: int  # pairs passed over as near-duplicates of a better one
    examined: int  # pairs looked at


def select_batch(store: MetadataStore, filters: PairFilters, k: int, hamming: int) -> BatchSelection:
    """Greedy: walk pairs by descending score; keep one unless it lies within ``hamming`` bits of a kept one."""
    kept_ids: list[str] = []
    hv = np.zeros(k, dtype=np.uint64)
    ht = np.zeros(k, dtype=np.uint64)
    skipped = examined = 0
    for upload_id, pv, pt in store.iter_ranked(filters):
        if len(kept_ids) >= k:
            break
        examined += 1
        n = len(kept_ids)
        if hamming >= 0 and n and int(pair_distance(hv[:n], ht[:n], pv, pt).min()) <= hamming:
            skipped += 1
            continue
        hv[n] = np.uint64(to_unsigned(pv))
        ht[n] = np.uint64(to_unsigned(pt))
        kept_ids.append(upload_id)
    return BatchSelection(upload_ids=kept_ids, skipped_duplicates=skipped, examined=examined)
