"""Sources that tests prepend to the scripts they run in subprocesses. SOURCE: a meta-path finder that hides torch
(and its package metadata), for the scripts tests run in
subprocesses: there, `import torch` fails and libraries that probe for torch take their torch-free paths, as
in a user's install without the test extras."""

SOURCE = r'''
import importlib.machinery, importlib.metadata, sys


class HideTorch:
    """sys.path's finder, blind to torch and its metadata: libraries take their torch-free paths."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)

    @staticmethod
    def find_distributions(context=None, **kwargs):
        context = context or importlib.metadata.DistributionFinder.Context(**kwargs)
        if (context.name or "").lower() == "torch":
            return iter(())
        return (d for d in importlib.machinery.PathFinder.find_distributions(context)
                if not getattr(d, "_path", None) or not d._path.name.lower().startswith("torch-"))

    @staticmethod
    def invalidate_caches():
        importlib.machinery.PathFinder.invalidate_caches()


sys.meta_path[:] = [HideTorch if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
'''


def paced_engine(pace: float) -> str:
    """Source that makes `engine.generate` wait `pace` seconds after each finished request: a tiny model writes
    all its traces within a tenth of a second, so a process meant to be killed mid-generation paces itself as a
    large model would (each trace is appended and fsync'd before the wait)."""
    return f"""
import time
from entropy_jax.llm import engine
_generate = engine.generate
def paced(*args, on_result, **kw):
    def each(result):
        on_result(result)
        time.sleep({pace})
    return _generate(*args, on_result=each, **kw)
engine.generate = paced
"""
