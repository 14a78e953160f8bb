"""Quiet command lines: the library's own progress and warnings, not a wall of other libraries' logs.

Before its answer, a first run would print transformers' "Loading weights" and "Writing model shards"
bars and its GGUF de-quantisation bar, a ``past_key_values`` deprecation warning from inside torch
and bitsandbytes' note about optional CPU kernels: nothing a user of the command line can act on.
``setup()`` (called by the command lines, never on import) hides them:

* the ``universalner`` logger prints its INFO messages (one line when a GGUF file is converted, once)
  and warnings to stderr as ``universalner: ...``;
* transformers logs errors only and shows no progress bars; bitsandbytes, accelerate, peft,
  huggingface_hub, kernels (transformers' kernel hub), torch and torchao log errors only; FutureWarning and DeprecationWarning raised
  outside ``universalner`` are not shown (they speak to the developers of the code that raised them);
  torch and transformers are set when they are imported (torch resets its loggers then), so
  ``setup()`` imports neither;
* ``verbose=True`` (``--verbose``) changes none of the other libraries and shows the library's DEBUG
  messages. A library's own switch still works: ``TRANSFORMERS_VERBOSITY=info`` keeps transformers'
  logs, ``TORCH_LOGS`` torch's.

In Python, ``UniversalNER.from_pretrained`` (and so the spaCy component) loads as quietly, and only
while it loads (``loading_quietly``): transformers' "Loading weights" bar and its INFO/WARNING logs and
FutureWarning/DeprecationWarning are hidden for that call and put back as they were after it.
``verbose=True`` shows them, and so does ``TRANSFORMERS_VERBOSITY`` (set to anything: transformers'
own setting is then left alone). Everything else is left to ``logging``, as usual.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

_VERBOSE = False  # set by setup(verbose=True)

#: libraries whose INFO/WARNING logs are for their own developers, not for a user of the command line
LIBRARIES = (
    "bitsandbytes",
    "accelerate",
    "peft",
    "huggingface_hub",
    "kernels",
    "torch",
    "torchao",
    "filelock",
    "httpx",
)


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
    global _VERBOSE
    log = logging.getLogger("universalner")
    _own_handler()
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    _VERBOSE = bool(verbose)  # a --verbose command line: loading_quietly hides nothing either
    if verbose or not libraries:
        return
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("default", category=FutureWarning, module=r"universalner(\.|$)")
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"universalner(\.|$)")
    if not os.environ.get("TORCH_LOGS"):  # else the user chose torch's logs
        _after_import("torch", _quiet_torch)
    if not os.environ.get("TRANSFORMERS_VERBOSITY"):  # else the user chose transformers' verbosity
        _after_import("transformers", _quiet_transformers)


def _after_import(name: str, then: Callable[[], None]) -> None:
    """``then()`` now if ``name`` is imported, else right after it is (once)."""
    if name in sys.modules:
        then()
    elif not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, then))


def _quiet_torch() -> None:
    # torch sets its loggers' levels when it is imported (from TORCH_LOGS): set after that
    logging.getLogger("torch").setLevel(logging.ERROR)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls ``then()`` right after the module ``name`` is first imported.

    transformers and torch are quieted when something imports them, not by importing them in
    ``setup()``: a command line that stops at a bad argument stops before seconds of imports. (A
    finder, not a one-off check: availability probes such as ``importlib.util.find_spec("torch")``
    ask the finders without importing.)"""

    def __init__(self, name: str, then: Callable[[], None]):
        self.name, self.then = name, then
        self.looking = False

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name or self.looking:
            return None
        self.looking = True  # the look-up below asks the finders again, this one included
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.looking = False
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenLoader(spec.loader, self)
        return spec

    def done(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self.then()


class _ThenLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, finder: _AfterImport):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # the module sees its own loader
        self.loader.exec_module(module)
        self.finder.done()


class progress_bars:
    """transformers' progress bars on or off for a block, the GGUF de-quantisation bar included (it is
    a plain tqdm that transformers' switch does not reach)."""

    def __init__(self, show: bool):
        self.show = show
        self.saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> None:
        if self.show:
            return
        import functools

        from transformers.utils import logging as hf_logging

        self.was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            from transformers import modeling_gguf_pytorch_utils as gguf_utils
        except ImportError:
            return
        bar = getattr(gguf_utils, "tqdm", None)
        if bar is not None:
            self.saved.append((gguf_utils, bar))
            gguf_utils.tqdm = functools.partial(bar, disable=True)

    def __exit__(self, *exc: Any) -> None:
        if self.show:
            return
        from transformers.utils import logging as hf_logging

        for module, bar in self.saved:
            module.tqdm = bar
        self.saved.clear()
        if self.was_on:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def loading_quietly(verbose: bool = False):
    """Hide transformers' loading bars, logs and deprecation warnings for a block, then restore them.

    A no-op with ``verbose=True``, after ``setup(verbose=True)`` (a ``--verbose`` command line), or when ``TRANSFORMERS_VERBOSITY`` is set (the user's own choice for
    transformers' output). Imports transformers: for blocks that load a transformers model anyway.
    """
    if verbose or _VERBOSE or os.environ.get("TRANSFORMERS_VERBOSITY"):
        yield
        return
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    # transformers' kernel hub logs through its own package, not transformers' logger
    kernels = logging.getLogger("kernels")
    kernels_level = kernels.level
    kernels.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), progress_bars(False):
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("default", category=FutureWarning, module=r"universalner(\.|$)")
            warnings.filterwarnings("default", category=DeprecationWarning, module=r"universalner(\.|$)")
            yield
    finally:
        hf_logging.set_verbosity(level)
        kernels.setLevel(kernels_level)
