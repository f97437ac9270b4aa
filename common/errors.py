"""Errors that a person reads.

Every failure that reaches a user is a `UserError`: its message is one plain
sentence that says what went wrong and, where it helps, what to do. The command
line prints it without a traceback; the window shows it in a dialog.
"""


class UserError(Exception):
    """A failure with a message fit to show a person as it is."""


class ModelFileError(UserError):
    """A model file that cannot be used: missing, not GGUF, corrupt or hostile."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"The model file {self.path} cannot be used: {reason}.")


class ContextFullError(UserError):
    """The conversation does not fit the model's context under the chosen policy."""


class ModelNotFoundError(UserError):
    """A model name that is neither installed, in the catalogue, nor a file."""
