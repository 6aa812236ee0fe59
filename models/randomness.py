"""A model build that no other thread's use of Python's global `random` can change.

Keras seeds its weights through the process-wide `random` module:
`keras.utils.set_random_seed(seed)` calls `random.seed(seed)`, and every
initializer without an explicit seed then takes `random.randint(...)` from
it (`keras.src.random.seed_generator.make_default_seed`). Any other thread
that draws from `random` between those two calls changes the weights; the
browser's warm-up thread does exactly that (Playwright's call ids come from
`random.randrange`), so exports made while Chromium starts were not
reproducible.

`own_random(seed)` gives the calling thread its own `random.Random(seed)`
for the duration of a build: while any build runs, the module-level
functions of `random` (`random.seed`, `random.randint`, ...) are replaced by
dispatchers that use the calling thread's generator if it has one, and the
shared one otherwise. Other threads see the global generator exactly as
before; the originals are put back when the last build ends.
"""

from __future__ import annotations

import contextlib
import random
import threading
from typing import Any, Callable, Iterator

# The module-level functions of `random`: bound methods of its hidden shared instance.
_NAMES = tuple(n for n in dir(random) if not n.startswith("_")
               and getattr(getattr(random, n), "__self__", None) is random._inst)  # type: ignore[attr-defined]
_lock = threading.Lock()
_owned: dict[int, random.Random] = {}  # thread ident -> that thread's generator, during its build
_originals: dict[str, Callable[..., Any]] = {}


def _dispatcher(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        own = _owned.get(threading.get_ident())
        return original(*args, **kwargs) if own is None else getattr(own, name)(*args, **kwargs)

    dispatch.__name__ = dispatch.__qualname__ = name
    dispatch.__doc__ = original.__doc__
    return dispatch


@contextlib.contextmanager
def own_random(seed: int) -> Iterator[random.Random]:
    """Within the block, this thread's calls to `random.*` use a private `random.Random(seed)`.

    Nested and concurrent uses (other threads building too) are fine: each
    thread has its own generator, and the shared functions come back when
    the last block ends.
    """
    ident = threading.get_ident()
    own = random.Random(seed)
    with _lock:
        outer = _owned.get(ident)
        if not _owned and not _originals:
            for name in _NAMES:
                _originals[name] = getattr(random, name)
                setattr(random, name, _dispatcher(name, _originals[name]))
        _owned[ident] = own
    try:
        yield own
    finally:
        with _lock:
            if outer is None:
                del _owned[ident]
            else:
                _owned[ident] = outer
            if not _owned:
                for name, original in _originals.items():
                    setattr(random, name, original)
                _originals.clear()
