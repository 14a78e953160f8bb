"""Quiet command lines: the library's own progress and warnings, not a wall of other libraries' logs.

Before its answer, a first run would print transformers' "Loading weights" and "Writing model shards"
bars and its GGUF de-quantisation bar, a ``past_key_values`` deprecation warning from inside torch
and bitsandbytes' note about optional CPU kernels: nothing a user of the command line can act on.
``setup()`` (called by the command lines, never on import) hides them:

* the ``universalner`` logger prints its INFO messages (one line when a GGUF file is converted, once)
  and warnings to stderr as ``universalner: ...``;
* transformers logs errors only and shows no progress bars; bitsandbytes, accelerate, peft,
  huggingface_hub and torch log errors only; FutureWarning and DeprecationWarning raised outside
  ``universalner`` are not shown (they speak to the developers of the code that raised them);
* ``verbose=True`` (``--verbose``) changes none of the other libraries and shows the library's DEBUG
  messages. A library's own switch still works: ``TRANSFORMERS_VERBOSITY=info`` keeps transformers'
  logs, and in Python nothing is hidden unless ``setup()`` is called (``logging`` decides, as usual).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

#: libraries whose INFO/WARNING logs are for their own developers, not for a user of the command line
LIBRARIES = ("bitsandbytes", "accelerate", "peft", "huggingface_hub", "torch", "filelock", "httpx")


class _Stderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is at the time (pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _own_handler() -> logging.Handler:
    log = logging.getLogger("universalner")
    for h in log.handlers:
        if isinstance(h, _Stderr):
            return h
    h = _Stderr()
    h.setFormatter(logging.Formatter("universalner: %(message)s"))
    log.addHandler(h)
    return h


def setup(verbose: bool = False, libraries: bool = True) -> None:
    """Configure logging for a command-line run (see the module docstring); safe to call twice.

    ``libraries=False``: only the library's own messages (a job that loads no model, such as
    ``distill``, need not import transformers to quiet it)."""
    log = logging.getLogger("universalner")
    _own_handler()
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose or not libraries:
        return
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("default", category=FutureWarning, module=r"universalner(\.|$)")
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"universalner(\.|$)")
    if os.environ.get("TRANSFORMERS_VERBOSITY"):
        return  # the user chose transformers' verbosity
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
