"""Pairing by capture time: equal rates, 9 vs 30 Hz, drift, a stalled stream, end of stream."""

import numpy as np

from msmine.edge_runtime.cameras import Frame
from msmine.edge_runtime.pairing import Pairer

IMG = np.zeros((2, 2), np.uint8)


def frames(camera, times):
    return [Frame(camera, i, t, t, IMG) for i, t in enumerate(times)]


def run(pairer, vis_times, thr_times):
    """Feed both streams merged in capture order (as the pipeline does), then end both."""
    events = sorted(frames("visible", vis_times) + frames("thermal", thr_times), key=lambda f: (f.t, f.camera))
    pairs = []
    for f in events:
        pairs += pairer.push(f)
    pairs += pairer.end("visible")
    pairs += pairer.end("thermal")
    return [(p.visible.index, p.thermal.index) for p in pairs]


def test_equal_rates_pair_every_frame():
    t = np.arange(100) / 30
    p = Pairer(0.025)
    assert run(p, t, t) == [(i, i) for i in range(100)]
    assert p.unpaired == {"visible": 0, "thermal": 0}


def test_9hz_thermal_beside_30hz_visible_takes_the_nearest_visible_frame():
    vis = np.arange(300) / 30
    thr = np.arange(90) / 9 + 0.004
    p = Pairer(0.025)
    got = run(p, vis, thr)
    assert len(got) == 90
    for vi, ti in got:
        assert abs(vis[vi] - thr[ti]) == min(abs(vis - thr[ti]))
    assert p.unpaired == {"visible": 300 - 90, "thermal": 0}


def test_drift_stays_paired_while_within_tolerance_then_drops():
    vis = np.arange(200) / 30
    thr = np.arange(200) / 30.3  # thermal clock runs 1 % fast: drifts by ~66 ms over 200 frames
    p = Pairer(0.02)
    got = run(p, vis, thr)
    assert got[:50] == [(i, i) for i in range(50)]
    diffs = [abs(vis[v] - thr[t]) for v, t in got]
    assert max(diffs) <= 0.02
    assert p.paired + p.unpaired["visible"] == 200 and p.paired + p.unpaired["thermal"] == 200


def test_stalled_stream_keeps_buffers_bounded_and_recovers():
    p = Pairer(0.02, max_buffer=10)
    vis = frames("visible", np.arange(100) / 30)
    out = []
    for f in vis[:10]:
        out += p.push(f)
        out += p.push(Frame("thermal", f.index, f.t, f.t, IMG))
    for f in vis[10:90]:  # thermal frozen
        out += p.push(f)
    assert p.pending() <= 10
    for i, f in enumerate(vis[90:]):  # thermal back
        out += p.push(f)
        out += p.push(Frame("thermal", 10 + i, f.t, f.t, IMG))
    out += p.settle()
    assert len(out) == 20
    assert p.unpaired["visible"] == 80


def test_a_frame_never_pairs_twice_and_far_frames_never_pair():
    p = Pairer(0.01)
    got = run(p, [0.0, 0.5, 1.0], [0.003, 0.2, 0.7, 1.005])
    assert got == [(0, 0), (2, 3)]
    assert p.unpaired == {"visible": 1, "thermal": 2}
