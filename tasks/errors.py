"""The one error type for bad input, at the ground floor so that every layer can raise it: the
CLI prints its message as one line and exits with status 2."""


class InputError(ValueError):
    """Bad input from a user: a config value, a file, a flag. The message is one line."""


def bad_value(key, value, allowed):
    """The standard message: the key, the value, and what is allowed."""
    return InputError(f"{key}={value!r} is not allowed: {allowed}")
