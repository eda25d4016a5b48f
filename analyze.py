"""Photos into a table: one row per face (file, box, label, confidence, seven probabilities).
The command line lives in ``ferkit.analyze`` (also installed as ``ferkit-analyze``); this is the
checkout's way to run it: ``python analyze.py --help``."""

from ferkit.analyze import analyze, main, parse_args

__all__ = ["analyze", "main", "parse_args"]

if __name__ == "__main__":
    main()
