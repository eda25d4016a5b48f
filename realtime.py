"""Live facial-expression recognition: webcam, video, image or folder -> YuNet faces -> the CNN.
The command line lives in ``ferkit.live`` (also installed as ``ferkit-live``); this is the
checkout's way to run it: ``python realtime.py --help``."""

from ferkit.live import main, parse_args, run

__all__ = ["main", "parse_args", "run"]

if __name__ == "__main__":
    main()
