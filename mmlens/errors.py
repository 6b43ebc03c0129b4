"""One family of errors, each naming the bad value and the fix."""


class MMLensError(Exception):
    """Base class of every error mmlens raises on purpose."""


class CheckpointNotFoundError(MMLensError):
    """The checkpoint is neither a local directory nor in the local Hugging Face cache."""


class UnsupportedModelError(MMLensError):
    """No adapter knows the checkpoint's architecture."""


class ImageError(MMLensError):
    """The image is missing, unreadable or of an unsupported type."""


class PromptError(MMLensError):
    """The prompt cannot be turned into model inputs (e.g. too many image tokens)."""


class LayerIndexError(MMLensError, IndexError):
    """A layer or block index is outside the model."""


class TokenError(MMLensError):
    """A rival word is not a single token of the vocabulary."""


class ConfigError(MMLensError, ValueError):
    """An argument has a value that cannot work (e.g. max_new_tokens < 1)."""


class TraceFormatError(MMLensError):
    """A saved Trace is missing files or was written by an incompatible version."""


class BenchmarkDataError(MMLensError):
    """A benchmark's annotation, question or response file is missing or malformed."""


class MissingDependencyError(MMLensError):
    """An optional package that a feature needs is not installed."""


class RunFolderBusyError(MMLensError):
    """Another process is writing the run folder (`mmlens run --out`); one run owns it at a time."""
