"""Keep third-party chatter off a normal run's terminal: library progress bars (GGUF conversion, "Loading
weights"), info logs and deprecation warnings. ``--verbose`` shows them; our own progress bar and messages
are not affected (the bar passes ``disable=False`` explicitly, which the environment default cannot override)."""

from __future__ import annotations

import logging
import os
import warnings

QUIET_ENV = {
    "TQDM_DISABLE": "1",  # tqdm's default for bars that do not say (transformers' GGUF conversion bar)
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_DEDUP_LOGS": "1",
}


def quiet_libraries(verbose: bool = False) -> None:
    """Silence the libraries unless ``verbose``. Call before they are imported (the environment
    defaults are read at import); warnings and loggers are silenced either way."""
    if verbose:
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in ("transformers", "torch", "accelerate", "huggingface_hub", "ray", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
