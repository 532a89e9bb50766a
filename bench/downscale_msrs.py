"""Write a downscaled copy of MSRS (same layout) for a GPU machine the shared data does not reach.

    .venv/bin/python bench/downscale_msrs.py ../shared/data/msrs gpu_carry/msrs --width 320

Images are resized (JPEG quality 90), masks with nearest neighbour (PNG); YOLO labels are
normalised, so they are copied unchanged. The output folder must be git-ignored.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--no-masks", action="store_true", help="leave the segmentation masks out")
    args = parser.parse_args()
    src, dst = Path(args.src), Path(args.dst)
    for name in ("classes.txt", "segmentation_classes.txt"):
        if (src / name).is_file():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / name, dst / name)
    for split in ("train", "test"):
        folders = ("visible", "infrared") if args.no_masks else ("visible", "infrared", "segmentation")
        for folder in folders:
            out = dst / split / folder
            out.mkdir(parents=True, exist_ok=True)
            for path in sorted((src / split / folder).iterdir()):
                flag = cv2.IMREAD_UNCHANGED if folder == "segmentation" else cv2.IMREAD_COLOR
                if folder == "infrared":
                    flag = cv2.IMREAD_GRAYSCALE
                image = cv2.imread(str(path), flag)
                h, w = image.shape[:2]
                size = (args.width, round(h * args.width / w))
                if folder == "segmentation":
                    small = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
                    cv2.imwrite(str(out / path.name), small)
                else:
                    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                    cv2.imwrite(str(out / path.name), small, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        shutil.copytree(src / split / "labels", dst / split / "labels", dirs_exist_ok=True)


if __name__ == "__main__":
    main()
