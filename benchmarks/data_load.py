"""Time loading an image folder or archive into memory: first load (decode + cache write),
then second load (from the decoded cache), train and test splits.

    python benchmarks/data_load.py folder:../shared/data/cifar10-jpeg.tar.gz --cache /tmp/rk-cache
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from resnetkit.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="folder:PATH of a folder or .tar/.tar.gz")
    parser.add_argument("--cache", required=True, help="a scratch cache folder (emptied first)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    args = parser.parse_args()
    size = (args.image_size, args.image_size)
    os.environ["RESNETKIT_CACHE"] = args.cache  # read on every load: nothing else is touched
    for data in args.data:
        shutil.rmtree(args.cache, ignore_errors=True)
        for attempt in ("first (decode + cache write)", "second (from cache)"):
            start = time.perf_counter()
            sets = [
                load_dataset(
                    data,
                    split,
                    image_size=size,
                    in_memory=True,
                    workers=args.workers,
                )
                for split in ("train", "test")
            ]
            seconds = time.perf_counter() - start
            shapes = " + ".join(str(tuple(ds.images.shape)) for ds in sets)
            print(f"{data}  {attempt}: {seconds:.1f} s  {shapes}", flush=True)


if __name__ == "__main__":
    main()
