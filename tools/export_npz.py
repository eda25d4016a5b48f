"""Write a dataset's decoded faces, labels and splits into one compressed .npz, which every
script takes as --data: the way to carry FER2013 to a GPU machine (62 MiB instead of
35,887 image files).

    python tools/export_npz.py --data ../shared/data/fer2013 --out fer2013.npz
    KERAS_BACKEND=jax python train_cnn.py --data fer2013.npz --preset strong --models-dir OUT --plots-dir OUT

Smaller, for a machine that takes 64 MiB in all (tools/device_train.sh): the training and
validation faces only, as WebP images at quality 90 (28 MiB; about 2 grey levels RMS from the
originals); train_cnn.py trains on it and leaves the test report to evaluate.py here.

    python tools/export_npz.py --data ../shared/data/fer2013 --out fer_trainval.npz --splits train val --quality 90
"""

from __future__ import annotations

from pathlib import Path

from ferkit import cli
from ferkit.data import export_npz


def main(argv=None) -> Path:
    p = cli.parser(__doc__)
    cli.add_common(p, "data", "cache_dir")
    p.add_argument("--out", type=Path, required=True, help="the .npz to write")
    p.add_argument(
        "--splits", nargs="+", choices=("train", "val", "test"), default=["train", "val", "test"], help="splits to keep"
    )
    p.add_argument("--quality", type=int, help="store faces as lossy WebP at this quality (1-100), about half the size")
    p.add_argument("--overwrite", action="store_true", help="allow --out to replace an existing file")
    args = p.parse_args(argv)
    cli.check_output_file(p, "--out", args.out, suffixes={".npz"})
    cli.refuse_same(p, {"--out": args.out}, {"--data": args.data})
    cli.refuse_existing(p, [args.out], args.overwrite, "Give --out another name")
    path = cli.run_main(
        lambda: export_npz(args.data, args.out, args.cache_dir, splits=tuple(args.splits), quality=args.quality)
    )
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return path


if __name__ == "__main__":
    main()
