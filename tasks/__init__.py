"""The tasks a network is trained on: `tasks.get(name, **options)` builds one by name."""

from dynamics.errors import InputError, bad_value
from tasks.synthetic import (HEADS, Arithmetic, Memorization, Permutation, Task,
                             TemporalOrder)

# name -> (class, fixed arguments); user options are added to the fixed ones
_SYNTHETIC = {
    "torder": (TemporalOrder, {"name": "torder", "starts": (0.1, 0.5)}),
    "torder3": (TemporalOrder, {"name": "torder3", "starts": (0.1, 0.3, 0.6)}),
    "add": (Arithmetic, {"name": "add"}),
    "mul": (Arithmetic, {"name": "mul"}),
    "mem": (Memorization, {}),
    "perm": (Permutation, {}),
}

NAMES = tuple(_SYNTHETIC)


def get(name, **options):
    """Build the task `name` with its options (only `mem` has any: n_values, n_pos)."""
    if name not in _SYNTHETIC:
        raise bad_value("task", name, ", ".join(NAMES))
    cls, fixed = _SYNTHETIC[name]
    for key, value in options.items():
        if key not in cls.options:
            takes = f"options {', '.join(cls.options)}" if cls.options else "no options"
            raise bad_value(key, value, f"task {name} takes {takes}")
    return cls(**fixed, **options)


__all__ = ["get", "NAMES", "HEADS", "InputError", "Task", "TemporalOrder", "Arithmetic",
           "Memorization", "Permutation"]
