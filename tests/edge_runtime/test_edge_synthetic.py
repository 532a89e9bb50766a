import numpy as np

from msmine.edge_runtime.synthetic import (
    CLASS_NAMES,
    CONDITIONS,
    SyntheticScene,
    synthetic_dataset,
    write_msrs_layout,
)


def test_scene_is_deterministic_and_both_cameras_show_the_same_scene():
    a, b = SyntheticScene(seed=3), SyntheticScene(seed=3)
    for t in (0.0, 1.7, 13.2):
        assert np.array_equal(a.render_visible(t), b.render_visible(t))
        assert np.array_equal(a.render_thermal(t), b.render_thermal(t))
    assert not np.array_equal(SyntheticScene(seed=4).render_thermal(1.7), a.render_thermal(1.7))


def test_frames_have_camera_shapes():
    s = SyntheticScene(seed=0, size=(320, 240))
    assert s.render_visible(0.5).shape == (240, 320, 3)
    assert s.render_thermal(0.5).shape == (240, 320)


def test_objects_are_warm_in_thermal_except_in_crossover():
    scene = SyntheticScene(seed=1, size=(320, 240))
    seen = set()
    for k in range(60):
        t = (k + 0.5) * scene.episode_s
        labels = scene.labels(t)
        cond = scene.condition_at(t)
        seen.add(cond)
        boxes = labels["fused"][0]
        if len(boxes) == 0:
            continue
        thermal = scene.render_thermal(t).astype(float)
        x1, y1, x2, y2 = (boxes[0] * [320, 240, 320, 240]).astype(int)
        inside = thermal[y1:y2, x1:x2].max()
        background = np.median(thermal[int(0.5 * 240):])
        if cond == "crossover":
            assert len(labels["thermal"][0]) == 0
            assert inside - background < 30
        else:
            assert len(labels["thermal"][0]) == len(boxes)
            assert inside - background > 50
        if cond in ("night", "smoke"):
            assert len(labels["visible"][0]) == 0
        if cond == "day":
            assert len(labels["visible"][0]) == len(boxes)
    assert seen == set(CONDITIONS)


def test_night_visible_is_dark_and_smoke_is_low_contrast():
    scene = SyntheticScene(seed=1, size=(320, 240))
    stats = {}
    for k in range(60):
        t = (k + 0.5) * scene.episode_s
        img = scene.render_visible(t)
        stats.setdefault(scene.condition_at(t), []).append((img.mean(), img.std()))
    assert max(m for m, _ in stats["night"]) < 40 < min(m for m, _ in stats["day"])
    assert max(s for _, s in stats["smoke"]) < min(s for _, s in stats["day"])


def test_synthetic_dataset_and_msrs_layout(tmp_path):
    pairs = synthetic_dataset(12, (160, 120), seed=5)
    assert len(pairs) == 12
    p = pairs[0]
    assert p.visible.shape == (120, 160, 3) and p.thermal.shape == (120, 160)
    for boxes, labels in ((p.boxes_visible, p.labels_visible), (p.boxes_fused, p.labels_fused)):
        assert boxes.shape == (len(labels), 4) and boxes.dtype == np.float32
        assert np.all((boxes >= 0) & (boxes <= 1)) and np.all(boxes[:, 2] >= boxes[:, 0])
        assert set(labels.tolist()) <= set(range(len(CLASS_NAMES)))
    assert [q.condition for q in synthetic_dataset(12, (160, 120), seed=5)] == [q.condition for q in pairs]
    root = write_msrs_layout(pairs, tmp_path / "syn")
    assert (root / "classes.txt").read_text().split() == list(CLASS_NAMES)
    assert len(list((root / "train" / "visible").iterdir())) == 12
    label_files = sorted((root / "train" / "labels" / "fusion").iterdir())
    n_lines = sum(len(f.read_text().split("\n")) - 1 for f in label_files)
    assert n_lines == sum(len(q.boxes_fused) for q in pairs)
