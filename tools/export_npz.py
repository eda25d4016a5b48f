"""Write a dataset's decoded faces, labels and splits into one compressed .npz, which every
script takes as --data: the way to carry FER2013 to a GPU machine (62 MiB instead of
35,887 image files).

    python tools/export_npz.py --data ../shared/data/fer2013 --out fer2013.npz
    KERAS_BACKEND=jax python train_cnn.py --data fer2013.npz --preset strong --models-dir OUT --plots-dir OUT
"""

from __future__ import annotations

from pathlib import Path

from ferkit import cli
from ferkit.data import export_npz


def main(argv=None) -> Path:
    p = cli.parser(__doc__)
    cli.add_common(p, "data", "cache_dir")
    p.add_argument("--out", type=Path, required=True, help="the .npz to write")
    args = p.parse_args(argv)
    cli.check_output_file(p, "--out", args.out, suffixes={".npz"})
    cli.refuse_same(p, {"--out": args.out}, {"--data": args.data})
    path = cli.run_main(export_npz, args.data, args.out, args.cache_dir)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return path


if __name__ == "__main__":
    main()
