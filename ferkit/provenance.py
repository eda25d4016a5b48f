"""What a trained model records of its training data, and what that record says about faces it
is scored on later: ``train_cnn.py`` saves the record inside the model file (``modelfile``), and
``evaluate.py`` reads it on a split drawn from data that names none, to say whether those faces
were held out from the model or may have been among its training faces."""

from __future__ import annotations

import os
from pathlib import Path

from .data import TEST_FRACTION, VAL_FRACTION
from .modelfile import read_training
from .splits import SPLIT_RULE


def recorded_val_fraction(record: dict | None) -> float:
    """The fraction of the training faces a model's run held out for validation, where that run
    drew its validation split (``--val-fraction``), else the loader's default: scoring or averaging
    the model on data that names no validation split draws the same faces its run chose on."""
    if isinstance(record, dict) and "validation" in record.get("drawn", []):
        value = record.get("fractions", {}).get("validation")
        if isinstance(value, float) and 0 < value < 1:
            return value
    return VAL_FRACTION


def training_record(data, train_split, val_fraction: float, init_from=None, teachers=()) -> dict:
    """The record of a run's data: its folder or file name (not the full path, which a shared model
    would carry to others, nor where a link leads), the faces in each split and in training, which
    splits were drawn here rather than named by the data, by which rule and at which fractions, and
    the records of the model it started from (``--init-from``) and of its teachers (``--teacher``):
    their training faces reach this model too."""
    drawn = [name for name, was in (("validation", data.val_drawn), ("test", data.test_drawn)) if was]
    fractions = {"validation": val_fraction, "test": TEST_FRACTION}
    record = {
        "data": Path(os.path.abspath(os.path.expanduser(data.source))).name,
        "layout": data.layout,
        "faces": {"train": len(data.train), "validation": len(data.val), "test": len(data.test)},
        "trained_on": len(train_split),
        "drawn": drawn,
        "split_rule": SPLIT_RULE if drawn else None,
        "fractions": {name: fractions[name] for name in drawn},
    }
    if init_from:
        record["init_from"] = read_training(init_from)
    if teachers:
        record["teachers"] = [read_training(path) for path in teachers]
    return record


# The fields that decide which faces a run held out; members agreeing on them share those faces.
_SPLIT_FIELDS = {
    "data": "the data",
    "layout": "the data's layout",
    "faces": "the split sizes",
    "drawn": "the held-out splits",
    "split_rule": "the rule that drew them",
    "fractions": "the held-out fractions",
}
_OTHER_FIELDS = {
    "trained_on": "the faces trained on (--limit)",
    "init_from": "the model each started from (--init-from)",
    "teachers": "the teachers (--teacher)",
    "members": "their own members",
}


def average_record(records: list) -> tuple[dict | None, list[str]]:
    """The training record of an average of models whose records are ``records``, and what the
    members differ in, in words. Members that held out the same faces (same data, splits and rule)
    give the average those fields and all of their records under ``"members"``, so a member's start
    model or teachers still count; otherwise the average records none, as it cannot be told."""
    if all(record == records[0] for record in records):
        return records[0], []
    if any(not isinstance(record, dict) for record in records):
        return None, ["whether they record their training data (some do not)"]
    fields = dict.fromkeys(key for record in records for key in record)
    differ = [key for key in fields if any(r.get(key) != records[0].get(key) for r in records)]
    words = [
        (_SPLIT_FIELDS.get(key) or _OTHER_FIELDS.get(key, key))
        # a split field missing: a record of an older version (no --init-from is no field, by design)
        + (
            " (some records, of older versions, have none)"
            if key in _SPLIT_FIELDS and any(key not in r for r in records)
            else ""
        )
        for key in differ
    ]
    if any(key in _SPLIT_FIELDS for key in differ):
        return None, words
    shared = {key: records[0][key] for key in _SPLIT_FIELDS if key in records[0]}
    return {**shared, "trained_on": max(r.get("trained_on", 0) for r in records), "members": records}, words


def _why_not_held_out(record: dict | None, split: str, fractions: dict, total: int) -> list[str]:
    """Why ``split`` (drawn now at ``fractions`` from data of ``total`` faces) may hold faces that
    the run of ``record`` trained on; empty when it drew the same faces, if it is the same data."""
    if record is None:
        return ["it records no training data"]
    reasons = []
    rule = record.get("split_rule")
    if rule is None:
        reasons.append("its data named its own held-out splits")
    elif rule != SPLIT_RULE:
        reasons.append(f"it drew its held-out faces by another rule ({rule}, not {SPLIT_RULE})")
    elif split not in record.get("drawn", []):
        reasons.append(f"its data named its own {split} split")
    else:
        # The test split is drawn first, from every face; validation from the rest.
        matter = ["test"] if split == "test" else ["test", "validation"]
        for name in matter:
            then = record.get("fractions", {}).get(name, TEST_FRACTION if name == "test" else None)
            if name in record.get("drawn", []) and then != fractions[name]:
                reasons.append(f"it held out {then:.0%} for {name}, not the {fractions[name]:.0%} drawn now")
        was = sum(record.get("faces", {}).values())
        if was != total:
            reasons.append(
                f"the data had {was} faces then and {total} now (a small class's faces may have moved between splits)"
            )
    return reasons + [reason for reason in _inherited(record, split, fractions, total) if reason not in reasons]


def _inherited(record: dict, split: str, fractions: dict, total: int, who: str = "it") -> list[str]:
    """Why the models ``record``'s run learned from (its start model, teachers, or the members of
    an average) may have trained on faces of ``split``; ``who`` is the model the sentences name."""
    reasons = []
    start = record.get("init_from", False)
    if start is not False and _why_not_held_out(start, split, fractions, total):
        trained = f" (trained on {start.get('data', 'unnamed data')})" if isinstance(start, dict) else ""
        reasons.append(f"{who} started from a model (--init-from){trained} that may have trained on some of them")
    for teacher in record.get("teachers", []):
        if _why_not_held_out(teacher, split, fractions, total):
            reasons.append(f"a teacher (--teacher) {who} learned from may have trained on some of them")
            break
    for member in record.get("members", []):  # an average: the members share its splits, not their starts
        reasons += [r for r in _inherited(member, split, fractions, total, "a member") if r not in reasons]
    return reasons


def held_out_note(record: dict | None, name: str, split: str, fractions: dict, total: int) -> str:
    """One sentence on whether the drawn ``split`` ("test" or "validation", drawn at ``fractions``
    from data of ``total`` faces) is held out from the model ``name`` of ``record``."""
    if record is None:
        return (
            f"{name} records no training data (saved by an older version, not by train_cnn.py, or an average of "
            "models whose records differ): it cannot be "
            "told whether these faces were held out from it; one trained on this data by a version from before "
            "2 December 2026 held out other faces"
        )
    source = record.get("data", "its data")
    reasons = _why_not_held_out(record, split, fractions, total)
    if not reasons:
        return (
            f"{name} was trained on {source} with its {split} faces drawn by the same rule ({SPLIT_RULE}) and "
            "fraction: if that is this same data, decoded alike, none of these faces were among its training faces"
        )
    return f"{name} may have trained on some of these faces if it was trained on this data ({source}): " + "; ".join(
        reasons
    )
