"""Thin experiment entry points: `python -m launch.<name> --help` from a checkout (installed:
`python -m entropy_jax.launch.<name>` or the console scripts `entropy-jax-<name>`). Each exposes `main(config)`,
which calls library functions; process set-up (one XLA CPU device per core, the persistent compilation cache)
is the explicit `entropy_jax.runtime.configure()` call on each launcher's command-line path. Importing this
package changes nothing in the environment.
"""
