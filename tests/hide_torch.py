"""The source of a meta-path finder that hides torch (and its package metadata), for the scripts tests run in
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
