"""Checks CO3Dv2 annotation files before Implicitron parses them, so a bad file gets an error that
names the file, the entry and the field instead of a bare KeyError / TypeError from deep inside
``load_dataclass``.

The expected structure is read off Implicitron's own dataclasses (FrameAnnotation,
SequenceAnnotation), so the checks follow whatever version of them is installed.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import math
import typing
from typing import Any, Iterable, List

from pytorch3d.implicitron.dataset import types

INTRINSICS_FORMATS = ("ndc_isotropic", "ndc_norm_image_bounds")


class AnnotationError(ValueError):
    """An annotation file that does not parse; the message names the file and the field."""


def load_json_file(path: str) -> Any:
    """Parses a .json or gzipped .jgz file; errors name the file."""
    opener = gzip.open if path.endswith(".jgz") else open
    try:
        with opener(path, "rt", encoding="utf8") as f:
            return json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as error:
        kind = "gzipped JSON" if path.endswith(".jgz") else "JSON"
        raise AnnotationError(f"{path}: not valid {kind}: {error}") from error


def check_frame_annotations(path: str, require_mask_mass: bool = False) -> int:
    """Validates frame_annotations.jgz; returns the number of frames."""
    entries = _non_empty_list(load_json_file(path), path, "frame annotations")
    for i, entry in enumerate(entries):
        where = _frame_where(path, i, entry)
        _check(entry, types.FrameAnnotation, where, "")
        _check_frame_semantics(entry, where, require_mask_mass)
    return len(entries)


def check_sequence_annotations(path: str) -> int:
    """Validates sequence_annotations.jgz; returns the number of sequences."""
    entries = _non_empty_list(load_json_file(path), path, "sequence annotations")
    for i, entry in enumerate(entries):
        _check(entry, types.SequenceAnnotation, f"{path}: sequence entry {i}", "")
    return len(entries)


def check_set_lists(path: str) -> dict:
    """Validates set_lists_<subset>.json: {"train"|"val"|"test": [[seq, frame, path], ...]}."""
    data = load_json_file(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected an object with train/val/test lists, got {type(data).__name__}")
    for split, frames in data.items():
        if not isinstance(frames, list):
            raise AnnotationError(f"{path}: field '{split}' must be a list of [sequence, frame, path]")
        for i, frame in enumerate(frames):
            _check_frame_ref(frame, f"{path}: field '{split}[{i}]'")
    return data


def check_eval_batches(path: str) -> list:
    """Validates eval_batches_<subset>.json: [[[seq, frame, path], ...], ...]."""
    data = load_json_file(path)
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a list of batches, got {type(data).__name__}")
    for b, batch in enumerate(data):
        if not isinstance(batch, list) or not batch:
            raise AnnotationError(f"{path}: batch [{b}] must be a non-empty list of frames")
        for i, frame in enumerate(batch):
            _check_frame_ref(frame, f"{path}: field '[{b}][{i}]'")
    return data


def _non_empty_list(data: Any, path: str, what: str) -> list:
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a list of {what}, got {type(data).__name__}")
    if not data:
        raise AnnotationError(f"{path}: holds no {what}")
    return data


def _frame_where(path: str, index: int, entry: Any) -> str:
    if isinstance(entry, dict) and "sequence_name" in entry and "frame_number" in entry:
        return f"{path}: frame entry {index} ({entry['sequence_name']}/{entry['frame_number']})"
    return f"{path}: frame entry {index}"


def _check_frame_ref(frame: Any, where: str) -> None:
    ok = (
        isinstance(frame, list)
        and len(frame) in (2, 3)
        and isinstance(frame[0], str)
        and _is_int(frame[1])
        and (len(frame) == 2 or isinstance(frame[2], str))
    )
    if not ok:
        expected = "[sequence_name: str, frame_number: int, image_path: str]"
        raise AnnotationError(f"{where} must be {expected}, got {frame!r}")


def _check_frame_semantics(entry: dict, where: str, require_mask_mass: bool) -> None:
    viewpoint = entry.get("viewpoint")
    if viewpoint and viewpoint.get("intrinsics_format", INTRINSICS_FORMATS[1]) not in INTRINSICS_FORMATS:
        raise AnnotationError(
            f"{where}: field 'viewpoint.intrinsics_format' is {viewpoint['intrinsics_format']!r}, "
            f"expected one of {INTRINSICS_FORMATS}"
        )
    if viewpoint:
        _check_finite_camera(viewpoint, where)
    mask = entry.get("mask")
    if require_mask_mass and mask is not None and mask.get("mass") is None:
        raise AnnotationError(
            f"{where}: field 'mask.mass' is missing; remove_empty_masks needs it (or set remove_empty_masks=False)"
        )


def _check_finite_camera(viewpoint: dict, where: str) -> None:
    """A NaN / infinite camera parameter (JSON allows NaN and Infinity) makes every ray of the frame
    non-finite, which only shows up as non-finite losses much later."""
    for name in ("R", "T", "focal_length", "principal_point"):
        bad = [v for v in _numbers(viewpoint.get(name)) if not math.isfinite(v)]
        if bad:
            raise AnnotationError(f"{where}: field 'viewpoint.{name}' holds a non-finite value ({bad[0]}): "
                                  f"{viewpoint.get(name)!r}")


def _numbers(value: Any) -> Iterable[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def _check(value: Any, type_: Any, where: str, field: str) -> None:
    """Raises AnnotationError if ``value`` (parsed JSON) does not fit the type annotation."""
    origin, args = _shape(type_)
    if type_ is Any:
        return
    if origin is typing.Union:
        if value is None and type(None) in args:
            return
        _check(value, next(a for a in args if a is not type(None)), where, field)
    elif _is_dataclass(type_):
        _check_dataclass(value, type_, where, field)
    elif origin in (tuple, list):
        _check_sequence(value, origin, args, where, field)
    elif origin is dict:
        if not isinstance(value, dict):
            _fail(where, field, "an object", value)
    elif type_ is float and not (_is_int(value) or isinstance(value, float)):
        _fail(where, field, "a number", value)
    elif type_ is int and not _is_int(value):
        _fail(where, field, "an integer", value)
    elif type_ is str and not isinstance(value, str):
        _fail(where, field, "a string", value)


def _check_dataclass(value: Any, type_: Any, where: str, field: str) -> None:
    if not isinstance(value, dict):
        _fail(where, field, f"an object ({type_.__name__})", value)
    for f_name, f_type, required in _fields(type_):
        name = f"{field}.{f_name}" if field else f_name
        if f_name not in value:
            if required:
                raise AnnotationError(f"{where}: field '{name}' is missing")
            continue
        _check(value[f_name], f_type, where, name)


@functools.lru_cache(maxsize=None)
def _shape(type_: Any) -> tuple:
    return typing.get_origin(type_), typing.get_args(type_)


@functools.lru_cache(maxsize=None)
def _fields(type_: Any) -> tuple:
    """(name, resolved type, required) of a dataclass's fields, computed once per class."""
    hints = typing.get_type_hints(type_)
    return tuple(
        (f.name, hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(type_)
    )


def _check_sequence(value: Any, origin: type, args: Iterable, where: str, field: str) -> None:
    args = tuple(args)
    if not isinstance(value, list):
        _fail(where, field, "a list", value)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            _fail(where, field, f"a list of {len(args)} values", value)
        items: List = list(zip(value, args))
    else:
        items = [(v, args[0] if args else Any) for v in value]
    for i, (item, item_type) in enumerate(items):
        _check(item, item_type, where, f"{field}[{i}]")


@functools.lru_cache(maxsize=None)
def _is_dataclass(type_: Any) -> bool:
    return dataclasses.is_dataclass(type_)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fail(where: str, field: str, expected: str, value: Any) -> None:
    shown = repr(value)
    shown = shown if len(shown) < 60 else shown[:57] + "..."
    raise AnnotationError(f"{where}: field '{field or '<entry>'}' should be {expected}, got {shown}")
