"""Photos into a table: every face in a folder of images (searched recursively) or in the files
given, one row per face with the file name, box, label, confidence and the seven probabilities,
as CSV or JSON lines, on the terminal or in a file; optionally annotated copies named after the
sources. The faces of a batch of images are classified in one model call.

    ferkit-analyze photos/                          # rows on the terminal (CSV)
    ferkit-analyze photos/ --log results.csv --annotate annotated/
    python analyze.py photos/ a.jpg --log results.jsonl
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from . import cli, progress
from .atomic import replacing
from .classify import TTA_MODES, ExpressionClassifier
from .detect import YuNetDetector
from .errors import Interrupted, SourceError
from .facelog import TableFile
from .layouts import IMAGE_SUFFIXES
from .paths import IN_CHECKOUT
from .recognizer import Recognizer, load_image

# Left in an --annotate folder, so that a later run over the folder above it does not read the
# copies as photos (each face would be counted twice). A folder given as a source is still read.
ANNOTATED_MARKER = ".ferkit-annotated"
# Videos given by name are pointed to realtime.py (in a folder they are not images and not read).
VIDEO_INPUTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
# Photo formats cameras and phones write that OpenCV's wheels do not decode (an iPhone's photos
# are HEIC): left out of a folder with a note on converting them, not passed over in silence.
CAMERA_ONLY = {".heic", ".heif", ".avif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"}
# A 1x1 GIF: OpenCV decodes GIF from 4.11 on (the first frame of an animation).
_TINY_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def photo_suffixes() -> set[str]:
    """The image suffixes a folder of photos is searched for: the dataset ones, and .gif where
    this OpenCV reads it (realtime.py plays a GIF as a video instead)."""
    try:
        gif = cv2.imdecode(np.frombuffer(_TINY_GIF, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    except cv2.error:
        gif = False
    return IMAGE_SUFFIXES | ({".gif"} if gif else set())


def _convert_advice(files: list[Path]) -> str:
    kinds = ", ".join(sorted({p.suffix.lower() for p in files}))
    return (
        f"{len(files)} photo(s) in formats OpenCV cannot read ({kinds}), e.g. {files[0]}: convert them to JPEG "
        f"first (macOS: sips -s format jpeg FILE --out DIR; elsewhere ImageMagick: magick mogrify -format jpg FILES)"
    )


def find_images(sources, skip: Path | None = None) -> list[tuple[Path, Path]]:
    """(file, name in the table) for every image under the sources, in a stable order, each file
    once. Names are relative to the folder given (so annotated copies keep the folder layout), or,
    where two sources hold images of one name, to the folder the sources share. Folders inside a
    source that hold an earlier run's annotated copies (``ANNOTATED_MARKER``) are left out with a
    note, as are videos given by name; ``skip`` (this run's copies) silently."""
    found, videos, foreign, suffixes = [], [], [], photo_suffixes()
    for source in map(Path, sources):
        source = source.expanduser()
        if source.is_dir():
            everything = sorted(p for p in source.rglob("*") if p.is_file())
            files = [p for p in everything if p.suffix.lower() in suffixes]
            foreign += [p for p in everything if p.suffix.lower() in CAMERA_ONLY]
            earlier = {m.parent.resolve(): m.parent for m in source.rglob(ANNOTATED_MARKER) if m.parent != source}
            this_run = {skip.resolve()} if skip is not None else set()  # its own copies: no note
            left_out = set(earlier) | this_run
            hit = set()
            for p in files:
                inside = left_out.intersection(p.resolve().parents)
                hit |= inside
                if not inside:
                    found.append((p, p.relative_to(source)))
            for folder in sorted(earlier[c] for c in hit - this_run if c in earlier):
                print(
                    f"note: skipped {folder}: annotated copies of an earlier run (give the folder itself to read it)",
                    file=sys.stderr,
                )
        elif source.is_file() and source.suffix.lower() in VIDEO_INPUTS:
            videos.append(source)  # (DCIM/* holds clips too): left out, and named below
        elif source.is_file() and source.suffix.lower() in CAMERA_ONLY:
            foreign.append(source)  # named, it gets the same advice as in a folder
        elif source.is_file():
            found.append((source, Path(source.name)))
        else:
            raise SourceError(f"{source} not found; give image files or folders of images")
    if videos:
        live = "python realtime.py" if IN_CHECKOUT else "ferkit-live"
        advice = f"{live} --source {videos[0]} --no-display --log faces.csv reads a video"
        if not found:
            raise SourceError(f"{videos[0]} is a video; this command reads photos: {advice}")
        print(f"note: left out {len(videos)} video(s), e.g. {videos[0]}: {advice}", file=sys.stderr)
    if not found:
        if foreign:
            raise SourceError(f"no images OpenCV reads in {', '.join(map(str, sources))}: {_convert_advice(foreign)}")
        where = ", ".join(map(str, sources))
        raise SourceError(f"no images ({', '.join(sorted(suffixes))}) in {where}; check the path")
    if foreign:
        print(f"note: left out {_convert_advice(foreign)}", file=sys.stderr)
    first = {}  # a file given twice (itself and its folder): analysed once
    for path, name in found:
        first.setdefault(os.path.normcase(path.resolve()), (path, name))
    found = list(first.values())
    names = [str(name).casefold() for _, name in found]  # IMG.JPG and img.jpg are one file on macOS and Windows
    if len(set(names)) < len(names):
        # Images of one name from two sources (a/img.jpg, b/img.jpg): each is then named from the
        # folder all sources share (a/img.jpg, b/img.jpg), so their rows and copies stay apart.
        try:
            base = Path(os.path.commonpath([os.path.abspath(path.parent) for path, _ in found]))
        except ValueError:  # Windows: different drives
            raise SourceError("images of one name on two drives; analyze each drive in a run of its own") from None
        found = [(path, Path(os.path.abspath(path)).relative_to(base)) for path, _ in found]
    return found


def mark_annotated(folder: Path) -> None:
    """Leave ``ANNOTATED_MARKER`` in a folder of annotated copies (see ``find_images``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ANNOTATED_MARKER).write_text(
        "Annotated copies written by ferkit's analyze.py. A run over a folder above this one skips it;\n"
        "give this folder itself as a source to read it.\n"
    )


def refuse_writing_over_sources(images, folder: Path) -> None:
    """Refuse, before any work, annotated copies that would land on a source image: copies are
    named after their sources, so a --annotate folder that holds a given photo (its own folder, or
    a folder above a folder of sources) would overwrite it."""
    sources = {os.path.normcase(path.resolve()): path for path, _ in images}
    for path, name in images:
        hit = sources.get(os.path.normcase((folder / name).resolve()))  # where analyze writes the copy
        if hit is not None:
            raise SourceError(
                f"--annotate {folder} would write the annotated copy of {path} over the source image {hit}; "
                f"give a folder that holds no source images (e.g. --annotate annotated/)"
            )


# Files an operating system leaves in any folder it shows: no sign of the user's own files.
OS_CLUTTER = {".ds_store", "thumbs.db", "desktop.ini"}


def refuse_foreign_folder(folder: Path, log: Path | None = None) -> None:
    """Refuse, before any work and whatever ``--overwrite`` says, a --annotate folder that holds
    files no run of this program wrote (no ``ANNOTATED_MARKER`` in it or a folder above, where an
    earlier run's copies keep their sources' subfolders): a copy named like one of them would
    replace it, and the marker would hide the others from later runs over a folder above. This
    run's own table (``log``) and empty folders do not count."""
    if not folder.is_dir():
        return
    where = folder.resolve()
    if any((d / ANNOTATED_MARKER).exists() for d in (where, *where.parents)):
        return
    table = log.resolve() if log is not None else None

    def users(p: Path) -> bool:
        if p.name.casefold() in OS_CLUTTER or p.resolve() == table:
            return False
        return not p.is_dir() or any(q.is_file() for q in p.rglob("*"))

    foreign = sorted(p.name for p in folder.iterdir() if users(p))
    if foreign:
        raise SourceError(
            f"--annotate {folder} already holds files analyze.py did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); annotated copies go only into a new or empty folder, or "
            f"one an earlier run wrote (it holds {ANNOTATED_MARKER}): give another folder, e.g. --annotate annotated/"
        )


def refuse_replacing_copies(images, folder: Path) -> None:
    """Refuse, before any work, a --annotate folder that already holds copies this run would write
    (an earlier run's, or a user's files of the same names)."""
    there = [folder / name for _, name in images if (folder / name).exists()]
    if there:
        raise SourceError(
            f"--annotate {folder} already holds {len(there)} file(s) named as this run's annotated copies "
            f"(e.g. {there[0]}); give another folder, or add --overwrite to replace them"
        )


class ResultTable(TableFile):
    """Rows of faces as CSV or JSON lines (by the file's extension), to a file written under a
    partial name and moved onto its own at ``close`` (also after Ctrl-C), or to a stream."""

    def __init__(self, path: str, class_names, stream=None):
        super().__init__(path, stream)
        self.class_names = class_names
        self.writer = None if self.jsonl else csv.writer(self.file)
        self.started = False  # the CSV header waits for the first image read, so a run that reads
        # none prints only its error, and leaves no table behind

    def _start(self) -> None:
        if not self.started and self.writer is not None:
            self.writer.writerow(["file", "face", "x", "y", "w", "h", "label", "confidence", *self.class_names])
        self.started = True

    def write(self, name: str, faces) -> None:
        self._start()
        for index, face in enumerate(faces):
            probabilities = {n: round(p, 4) for n, p in face.probabilities.items()}
            if self.jsonl:
                row = {
                    "file": name,
                    "face": index,
                    "box": list(face.box),
                    "label": face.label,
                    "confidence": round(face.confidence, 4),
                    "probabilities": probabilities,
                }
                self.file.write(json.dumps(row) + "\n")
            else:
                self.writer.writerow(
                    [name, index, *face.box, face.label, round(face.confidence, 4), *probabilities.values()]
                )
        self.file.flush()

    def close(self, keep: bool = True) -> None:
        """Finish the table (a header at least), or with ``keep=False`` leave nothing behind."""
        if keep:
            self._start()
        self.end(keep)


def analyze(args) -> dict:
    images = find_images(args.sources, skip=args.annotate)
    if args.annotate:
        refuse_writing_over_sources(images, args.annotate)
        refuse_foreign_folder(args.annotate, None if args.log == "-" else Path(args.log))
        if not args.overwrite:
            refuse_replacing_copies(images, args.annotate)
    with cli.native_logs_silenced():
        recognizer = Recognizer(ExpressionClassifier(args.model, tta=args.tta), YuNetDetector(min_face=args.min_face))
    table = ResultTable(args.log, recognizer.class_names)
    bar = progress.bar(total=len(images), unit="img", disable=args.quiet, leave=False)
    started, n_images, n_faces, unreadable, faceless, interrupted = time.perf_counter(), 0, 0, [], [], False
    try:
        for start in range(0, len(images), args.batch):
            batch, chunk, frames = images[start : start + args.batch], [], []
            for path, name in batch:
                try:
                    frames.append(load_image(path))
                    chunk.append((path, name))
                except SourceError as exc:
                    unreadable.append(str(path))
                    bar.write(f"warning: skipped: {exc}", file=sys.stderr)
            for (_, name), frame, faces in zip(chunk, frames, recognizer.batch(frames) if frames else []):
                # An image's row and its annotated copy are written both or neither, and counted: a
                # stop says exactly how far the table goes.
                with cli.interrupts_held():
                    table.write(name.as_posix(), faces)
                    if args.annotate:
                        if not n_images:  # with the first copy: a run that writes none leaves no mark
                            mark_annotated(args.annotate)
                        canvas = recognizer.annotate(frame, faces, bars=args.bars, numbered=True)
                        target = args.annotate / name
                        with replacing(target, target.suffix) as tmp:
                            if not cv2.imwrite(tmp, canvas):
                                raise SourceError(f"cannot write {target}; check the folder --annotate")
                    n_faces, n_images = n_faces + len(faces), n_images + 1
                    if not faces:
                        faceless.append(name.as_posix())
            bar.update(len(batch))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        nothing_read = bool(unreadable) and not n_images and not interrupted
        # A table with no row of an image is kept only when a stop cut it short; a run that failed
        # before its first image leaves none that the next run would refuse to replace.
        table.close(keep=bool(n_images) or interrupted)
    seconds = time.perf_counter() - started
    summary = {
        "images": n_images,
        "faces": n_faces,
        "unreadable": unreadable,
        "no_face": faceless,
        "seconds": round(seconds, 2),
        "images_per_second": n_images / seconds if seconds else 0.0,
    }
    written = [str(p) for p in (table.path, args.annotate) if p]
    if nothing_read:
        raise SourceError(
            f"none of the {len(unreadable)} image file(s) could be read (first: {unreadable[0]}); "
            f"give images OpenCV reads ({', '.join(sorted(photo_suffixes()))})"
        )
    if interrupted:
        raise Interrupted(
            f"interrupted after {n_images} of {len(images)} images"
            + (f"; {', '.join(written)} hold everything up to there" if written else "")
        )
    print(
        f"{n_images} images, {n_faces} faces"
        + (f", {len(unreadable)} unreadable (skipped)" if unreadable else "")
        + (f", {len(faceless)} without a face (no row; e.g. {faceless[0]})" if faceless else "")
        + f", {summary['images_per_second']:.1f} images/s"
        + (f"; wrote {', '.join(written)}" if written else ""),
        file=sys.stderr,
    )
    return summary


def parse_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("sources", nargs="+", help="image files and folders of images (searched recursively)")
    p.add_argument(
        "--log",
        default="-",
        help="where the rows go: - for the terminal (default), FILE.csv, or FILE.jsonl for JSON lines",
    )
    p.add_argument("--annotate", type=Path, help="also write annotated copies here, named after their sources")
    p.add_argument("--bars", action="store_true", help="draw all class probabilities beside each face (--annotate)")
    cli.add_common(p, "model")
    p.add_argument("--min-face", type=int, default=YuNetDetector.min_face, help="smallest face side in pixels")
    p.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="average each face's probabilities over views: flip (with its mirror image) or crops (12 views)",
    )
    p.add_argument("--batch", type=int, default=32, help="images whose faces are classified in one model call")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--overwrite", action="store_true", help="allow --log and --annotate to replace an earlier run's files"
    )
    args = p.parse_args(argv)
    if args.batch < 1 or args.min_face < 1:
        p.error("--batch and --min-face must be at least 1")
    if args.log != "-":  # ~ expanded here, once: what is checked is what is written (--log=~/x.csv)
        args.log = str(Path(args.log).expanduser())
        cli.check_log_file(p, "--log", args.log)
    args.annotate = args.annotate.expanduser() if args.annotate else None
    cli.check_output_dir(p, "--annotate", args.annotate)
    log_file = None if args.log == "-" else args.log
    cli.refuse_same(p, {"--log": log_file, "--annotate": args.annotate}, {f"source {s}": s for s in args.sources})
    cli.refuse_existing(p, [log_file], args.overwrite, "Give --log another name")
    return args


def main(argv=None) -> dict:
    return cli.run_main(analyze, parse_args(argv))


def entry() -> None:
    """The installed console command: ``main`` returns its results for callers and tests, and a
    console script would turn a returned value into an exit status."""
    main()
