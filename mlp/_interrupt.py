"""Ctrl-C during an import. A KeyboardInterrupt (or SystemExit) raised
while an extension module initializes can come out of the import as an
ImportError. Where an import is optional (a core that may not be built, a
progress bar, a plotting or export library), catching that ImportError would
swallow the interrupt: `raise_interrupt` raises it again first."""

from __future__ import annotations


def raise_interrupt(exc: BaseException) -> None:
    """Raises the KeyboardInterrupt or SystemExit in exc's chain, if any."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (KeyboardInterrupt, SystemExit)):
            raise cause from None
        cause = cause.__cause__ or cause.__context__
