"""Model outputs -> detections / masks in the ORIGINAL image's pixels (undoing the letterbox)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from msmine.train.anchors import decode_boxes


def letterbox_params(image_hw: tuple[int, int], input_size: tuple[int, int]) -> tuple[float, float, float]:
    """(scale, pad_x, pad_y) of an aspect-preserving resize of ``image_hw`` into ``input_size``.

    Matches ``train.data.augment.letterbox``: scale = min(H/h, W/w), padding split evenly.
    """
    h, w = image_hw
    out_h, out_w = int(input_size[0]), int(input_size[1])
    scale = min(out_h / h, out_w / w)
    new_w = min(out_w, max(1, round(w * scale)))
    new_h = min(out_h, max(1, round(h * scale)))
    pad_x, pad_y = (out_w - new_w) // 2, (out_h - new_h) // 2
    return scale, float(pad_x), float(pad_y)


def detections_from_outputs(out: dict, anchors: torch.Tensor, input_size, score_threshold: float = 0.01,
                            nms_iou: float = 0.45, max_detections: int = 100, pre_nms: int = 400):
    """One branch's {"logits", "deltas"} for a batch -> per image (boxes x1y1x2y2 in input pixels,
    scores, class ids) after class-wise NMS (OpenCV)."""
    probs = torch.softmax(out["logits"].float(), dim=-1)[..., 1:]  # [N, A, C]
    boxes = decode_boxes(anchors, out["deltas"].float())  # [N, A, 4] normalised
    h, w = input_size
    boxes = boxes * boxes.new_tensor([w, h, w, h])
    results = []
    num_classes = probs.shape[-1]
    for p, b in zip(probs, boxes):
        flat = p.flatten()
        k = min(pre_nms, flat.numel())
        scores, idx = flat.topk(k)
        keep = scores > score_threshold
        scores, idx = scores[keep], idx[keep]
        anchor_idx = idx // num_classes
        classes = (idx % num_classes).cpu().numpy().astype(np.int64)
        cand = b[anchor_idx].cpu().numpy().astype(np.float32)
        scores = scores.cpu().numpy().astype(np.float32)
        if len(scores) == 0:
            results.append((np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)))
            continue
        xywh = np.concatenate([cand[:, :2], cand[:, 2:] - cand[:, :2]], axis=1)
        kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), classes.tolist(), score_threshold, nms_iou)
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)[:max_detections]
        results.append((cand[kept], scores[kept], classes[kept]))
    return results


def to_original_boxes(boxes: np.ndarray, image_hw, input_size) -> np.ndarray:
    scale, pad_x, pad_y = letterbox_params(image_hw, input_size)
    out = boxes.copy()
    out[:, 0::2] = (out[:, 0::2] - pad_x) / scale
    out[:, 1::2] = (out[:, 1::2] - pad_y) / scale
    h, w = image_hw
    np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
    return out


def masks_from_logits(logits: torch.Tensor, input_size) -> torch.Tensor:
    """[N, C, h, w] logits -> [N, H, W] class ids at the model input size."""
    up = F.interpolate(logits.float(), size=tuple(input_size), mode="bilinear", align_corners=False)
    return up.argmax(dim=1)


def to_original_mask(mask: np.ndarray, image_hw, input_size) -> np.ndarray:
    scale, pad_x, pad_y = letterbox_params(image_hw, input_size)
    h, w = image_hw
    rh = min(int(input_size[0]), max(1, round(h * scale)))
    rw = min(int(input_size[1]), max(1, round(w * scale)))
    crop = mask[int(pad_y): int(pad_y) + rh, int(pad_x): int(pad_x) + rw].astype(np.uint8)
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST)
