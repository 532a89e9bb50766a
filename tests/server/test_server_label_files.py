"""Label import details on the in-process app: one YOLO .txt, modality from the path, class mapping."""

from __future__ import annotations


def labels_of(served, uid):
    return served.client.get(f"/api/v1/pairs/{uid}", headers=served.auth(served.team)).json()["labels"]


def post_labels(served, name, content, **params):
    return served.client.post("/api/v1/labels", params=params, files={"file": (name, content)},
                              headers=served.auth(served.team))


def test_single_yolo_txt_with_modality_from_folder(served, rng):
    _, m = served.upload_synthetic(rng)
    uid = m["upload_id"]
    resp = post_labels(served, f"fusion/{uid}.txt", b"2 0.5 0.5 0.2 0.4\n1  0.25  0.25  0.1  0.1")
    assert resp.status_code == 200, resp.text
    assert labels_of(served, uid) == {"fusion": [[2, 0.5, 0.5, 0.2, 0.4], [1, 0.25, 0.25, 0.1, 0.1]]}
    # an empty file means "labelled, no objects"; modality=all writes the three sets
    assert post_labels(served, f"{uid}.txt", b"", modality="all").status_code == 200
    assert labels_of(served, uid) == {"fusion": [], "visible": [], "infrared": []}
    listed = served.client.get("/api/v1/pairs", params={"labelled": "true"}, headers=served.auth(served.team))
    assert listed.json()["total"] == 1


def test_yolo_class_out_of_range_and_bad_coordinates(served, rng):
    _, m = served.upload_synthetic(rng)
    uid = m["upload_id"]
    resp = post_labels(served, f"{uid}.txt", b"7 0.5 0.5 0.2 0.2\n")
    assert resp.status_code == 400 and "out of range" in resp.json()["detail"]
    resp = post_labels(served, f"{uid}.txt", b"0 1.5 0.5 0.2 0.2\n")
    assert resp.status_code == 400 and "normalised" in resp.json()["detail"]
    assert labels_of(served, uid) == {}


def test_coco_category_mapped_by_name_and_clipped(served, rng):
    _, m = served.upload_synthetic(rng)  # images 96 x 72
    uid = m["upload_id"]
    coco = {"images": [{"id": 5, "file_name": f"images/visible/{uid}.png", "width": 96, "height": 72}],
            "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 2, "bbox": [-10, 0, 58, 36]},
                            {"id": 2, "image_id": 5, "category_id": 1, "bbox": [0, 0, 0, 5]}]}
    import json

    resp = post_labels(served, "instances.json", json.dumps(coco).encode())  # auto: "visible" folder in the path
    assert resp.status_code == 200, resp.text
    (box,) = labels_of(served, uid)["visible"]  # the zero-width box is dropped
    assert box[0] == 0  # "person" is class 0 of the pair
    assert box[1:] == [0.25, 0.25, 0.5, 0.5]  # clipped to the image
