"""Argument checks shared by every lesson: one function per kind of check, one meaning per name.

DESIGN §7: a bad argument raises `TypeError` (wrong kind of value) or `ValueError` (right kind, wrong
value) with a message that names the argument, shows the value and says what is allowed:

    >>> check_number("top_p", 1.5, low=0, high=1, low_open=True)
    Traceback (most recent call last):
    ValueError: top_p must be a number in (0, 1], got 1.5

Each check returns the value (converted to a plain int/float where that is the point), so that a
constructor can write `self.n_head = check_int("n_head", n_head, minimum=1)`.
This module imports nothing heavy: `check_tensor` looks at torch only when it is called.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Iterable
from typing import Any

__all__ = [
    "check_bool",
    "check_choice",
    "check_dtype",
    "check_instance",
    "check_int",
    "check_logits_ids",
    "check_number",
    "check_str",
    "check_tensor",
    "describe",
    "renamed_arguments",
]


def describe(value: object) -> str:
    """`value!r` plus its type, short enough for an error message."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} of type {type(value).__name__}"


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def check_int(name: str, value: object, *, minimum: int | None = None, maximum: int | None = None,
              multiple_of: int | None = None, wrong_type: type[Exception] = TypeError) -> int:
    """An int (not a bool) in [minimum, maximum] (either bound may be None), optionally a multiple of
    `multiple_of` (2: an even size, used in pairs) -> int(value).

    Raises TypeError for a non-int (or `wrong_type`, see below), ValueError for an int out of range or
    not a multiple.
    """
    allowed = " ".join(filter(None, ("an int", _range_text(minimum, maximum, False, False))))
    if multiple_of is not None:
        allowed += " and even" if multiple_of == 2 else f" and a multiple of {multiple_of}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise wrong_type(f"{name} must be {allowed}, got {describe(value)}")
    if ((minimum is not None and value < minimum) or (maximum is not None and value > maximum)
            or (multiple_of is not None and value % multiple_of)):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return int(value)


def check_number(name: str, value: object, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, finite: bool = True,
                 wrong_type: type[Exception] = TypeError) -> float:
    """A real number (not a bool) in the interval given by low/high (open ends with low_open/high_open)
    -> float(value). NaN is always refused; infinities unless finite=False.

    Raises TypeError for a non-number (or `wrong_type`), ValueError for a number outside the interval.
    wrong_type=ValueError where an API raises ValueError for every bad value, as transformers' logits
    warpers do (lesson 05's sampling knobs follow them).
    """
    bounded = low is not None and high is not None  # a bounded interval needs no "finite"
    allowed = " ".join(filter(None, ("a", "finite" if finite and not bounded else "", "number",
                                     _range_text(low, high, low_open, high_open))))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise wrong_type(f"{name} must be {allowed}, got {describe(value)}")
    value = float(value)
    bad = math.isnan(value) or (finite and math.isinf(value))
    if low is not None:
        bad = bad or value < low or (low_open and value == low)
    if high is not None:
        bad = bad or value > high or (high_open and value == high)
    if bad:
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return value


def check_bool(name: str, value: object) -> bool:
    """True or False (not 0/1, not None). Raises TypeError."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {describe(value)}")
    return value


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """One of `allowed` (same type and ==, so that True is not taken for 1). Raises ValueError."""
    allowed = tuple(allowed)
    if not any(type(value) is type(option) and value == option for option in allowed):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_tensor(name: str, value: object, *, ndim: int | None = None, min_ndim: int | None = None,
                 dtype: str | None = None):
    """A torch.Tensor with `ndim` (or at least `min_ndim`) dimensions.

    dtype: None (any), "float" (a floating-point dtype) or "int" (an integer dtype, not bool).
    Raises TypeError for a non-tensor or a wrong dtype, ValueError for a wrong number of dimensions.
    """
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dtype == "float" and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if dtype == "int" and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(value.shape)}")
    if min_ndim is not None and value.dim() < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(value.shape)}")
    return value


def check_str(name: str, value: object) -> str:
    """A str. Raises TypeError."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {describe(value)}")
    return value


def check_instance(name: str, value: object, cls: type) -> Any:
    """An instance of `cls` (a GPTConfig, a lab GPT, ...). Raises TypeError."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")
    return value


def check_dtype(name: str, value: object):
    """A floating-point torch.dtype. Raises TypeError."""
    import torch

    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise TypeError(f"{name} must be a floating-point torch.dtype (torch.float32, torch.bfloat16, ...), "
                        f"got {value!r}")
    return value


def check_logits_ids(logits: object, ids: object, *, ids_name: str = "ids") -> tuple[int, int]:
    """A language model's logits (B, T, vocab) and token ids (B, T) of the same B and T -> (B, T).
    Raises TypeError unless logits is a float and ids an integer tensor, ValueError for other shapes."""
    check_tensor("logits", logits, ndim=3, dtype="float")
    check_tensor(ids_name, ids, ndim=2, dtype="int")
    if tuple(ids.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"{ids_name} must have shape {tuple(logits.shape[:2])} (logits' (B, T)), got "
                         f"{tuple(ids.shape)}")
    return logits.shape[0], logits.shape[1]


def renamed_arguments(**old_to_new: str):
    """Decorator: accept a keyword argument under its old name, with a DeprecationWarning.

        @renamed_arguments(n_heads="n_head")
        def __init__(self, d_model, n_head): ...

    One name for one quantity across the lessons (n_head, n_kv_head); the old spelling of a public
    keyword keeps working until callers move. Passing both spellings is a TypeError.
    The wrapper raises TypeError when a call passes both spellings.
    """
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__qualname__}() got both {old}= and {new}=; pass {new}= only")
                    warnings.warn(f"{fn.__qualname__}: {old}= is deprecated, use {new}=",
                                  DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
