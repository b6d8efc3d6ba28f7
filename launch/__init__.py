"""Thin experiment entry points: `python -m launch.<name> --help` from a checkout (installed:
`python -m entropy_jax.launch.<name>` or the console scripts `entropy-jax-<name>`). Each exposes `main(config)`,
which calls library functions; process set-up (one XLA CPU device per core, the persistent compilation cache)
is the explicit `entropy_jax.runtime.configure()` call on each launcher's command-line path (`command`, below).
Importing this package changes nothing in the environment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def command(config_type: type, main: Callable[[Any], Any], doc: str | None, args: Sequence[str] | None = None, *,
            report: Callable[[Any, Any], None] | None = None) -> Any:
    """A launcher's command line: process set-up (`entropy_jax.runtime.configure`), the frozen config parsed by
    tyro from `args` (default sys.argv; the module docstring's first paragraph is the help text), `main(config)`
    with a bad flag, file or held output directory reported as `error: …` and exit status 1
    (`_validate.cli_errors`), then `report(config, result)` (what the launcher prints). Returns main's result."""
    import tyro

    from entropy_jax import _validate as check
    from entropy_jax import runtime

    runtime.configure()
    config = tyro.cli(config_type, args=args, description=(doc or "").split("\n\n")[0])
    with check.cli_errors():
        result = main(config)
    if report is not None:
        report(config, result)
    return result
