"""Label import with a class map (issue 15, item 6): a person-only labelling tool's 'pedestrian' onto the
pairs' 'person', by name, through the real app."""

from __future__ import annotations

import json

import numpy as np

from tests.server.conftest import make_served
from tests.server.upload_helpers import CLASS_NAMES


def coco(upload_id: str, category: str) -> bytes:
    return json.dumps({"images": [{"id": 1, "file_name": f"{upload_id}.png", "width": 96, "height": 72}],
                       "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 30]}],
                       "categories": [{"id": 7, "name": category}]}).encode()


def test_label_import_maps_file_classes_by_name(tmp_path):
    served = make_served(tmp_path / "srv")
    resp, _ = served.upload_synthetic(np.random.default_rng(0))
    uid = resp.json()["upload_id"]
    auth = served.auth(served.team)

    def post(category: str, **query):
        return served.client.post("/api/v1/labels", params=query, headers=auth,
                                  files={"file": ("labels.json", coco(uid, category))})

    got = post("Pedestrian")
    assert got.status_code == 400 and "'Pedestrian' is not one of the pair's classes" in got.json()["detail"]
    got = post("Pedestrian", class_map="pedestrian=person")
    assert got.status_code == 200, got.text
    assert got.json()["pairs_labelled"] == 1
    labels = served.client.get(f"/api/v1/pairs/{uid}", headers=auth).json()["labels"]
    assert {box[0] for boxes in labels.values() for box in boxes} == {CLASS_NAMES.index("person")}
    got = post("Pedestrian", class_map="pedestrian")
    assert got.status_code == 400 and "bad class map entry 'pedestrian'" in got.json()["detail"]
    # the map is per request: the next import without it matches names as they are again
    assert post("Pedestrian").status_code == 400
