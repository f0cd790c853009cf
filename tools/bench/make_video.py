"""The benchmark's video: N frames of 448x448 (a gradient rolled sideways a
little more each frame), written twice with the same pixels: a folder of
PNG frames (what the Rust side reads without the `video` feature) and a
lossless FFV1 AVI at 2 frames per second (what Python's `load_video` reads
through OpenCV). At 2 fps both sides sample every frame.

    python tools/bench/make_video.py --out /tmp/bench_ck [--frames 8]
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

SIZE = 448


def frame(k):
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.stack([(x * 255) // (SIZE - 1), (y * 255) // (SIZE - 1),
                    ((x + y) * 255) // (2 * SIZE - 2)], axis=-1).astype(np.uint8)
    return np.roll(rgb, 24 * k, axis=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    folder = args.out / f"video-{SIZE}"
    folder.mkdir(parents=True, exist_ok=True)
    avi = args.out / f"video-{SIZE}.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"FFV1"), 2.0, (SIZE, SIZE))
    for k in range(args.frames):
        bgr = cv2.cvtColor(frame(k), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{k:03}.png"), bgr)
        writer.write(bgr)
    writer.release()
    print(folder)
    print(avi)


if __name__ == "__main__":
    main()
