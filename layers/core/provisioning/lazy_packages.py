"""Four Powertools packages whose ``__init__`` loads far more than the hub uses, imported so that it
runs only when a name of its own is asked for.

``aws_lambda_powertools.event_handler``'s ``__init__`` imports every resolver (AppSync with asyncio,
Bedrock agents, VPC Lattice, function URLs...), ``aws_lambda_powertools.utilities.data_classes``'
imports the data class of every kind of event, ``event_handler.openapi``'s the OpenAPI merge and
``utilities.parameters``' every parameter provider; the one resolver the hub uses (``api_gateway``'s
REST resolver) and its Secrets Manager provider need a few of them. Importing a submodule always
runs its package's ``__init__`` first, so ``install`` (called by ``provisioning``'s own
``__init__``) puts a finder first on ``sys.meta_path`` whose only effect is on these four packages,
when they are first imported:

- the package module is made as the import system makes it (``__path__``, ``__spec__``...), but its
  ``__init__`` is not run: importing a submodule (``...event_handler.api_gateway``) loads only that
  submodule and what it imports;
- a name the package's ``__init__`` exports is looked up on first use (a module ``__getattr__``,
  PEP 562): a submodule is imported; one of the few classes ``api_gateway`` takes from
  ``data_classes`` is taken from the submodule that defines it (``EXPORTS``, which a test checks
  against the real ``__init__``); any other name runs the real ``__init__`` then, once, on the same
  module object, which is from then on exactly what a normal import makes.

So ``from aws_lambda_powertools.event_handler import AppSyncResolver``, ``import
aws_lambda_powertools.utilities.data_classes as d; d.S3Event`` and ``from ... import *`` keep
working, in any order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# Each lazy package, with the names taken from a submodule without running the package's
# ``__init__`` (name -> submodule defining it): those the REST resolver's modules import from the
# package (``api_gateway``'s own, its data classes, and the dependency injection's).
EXPORTS: dict[str, dict[str, str]] = {
    "aws_lambda_powertools.event_handler": {
        "ALBResolver": "api_gateway",
        "APIGatewayHttpResolver": "api_gateway",
        "ApiGatewayResolver": "api_gateway",
        "APIGatewayRestResolver": "api_gateway",
        "CORSConfig": "api_gateway",
        "Response": "api_gateway",
        "DependencyResolutionError": "depends",
        "Depends": "depends",
        "Request": "request",
    },
    # Its __init__ imports the OpenAPI merge (and ``ast``), for ``provisioner openapi`` alone.
    "aws_lambda_powertools.event_handler.openapi": {
        "OpenAPIMerge": "merge",
        "OpenAPIMergeError": "exceptions",
    },
    # Its __init__ imports every parameter provider (SSM, AppConfig, DynamoDB): the hub reads
    # Secrets Manager alone.
    "aws_lambda_powertools.utilities.parameters": {
        "SecretsProvider": "secrets",
        "clear_caches": "base",
    },
    "aws_lambda_powertools.utilities.data_classes": {
        "ALBEvent": "alb_event",
        "APIGatewayProxyEvent": "api_gateway_proxy_event",
        "APIGatewayProxyEventV2": "api_gateway_proxy_event",
        "BedrockAgentEvent": "bedrock_agent_event",
        "LambdaFunctionUrlEvent": "lambda_function_url_event",
        "VPCLatticeEvent": "vpc_lattice",
        "VPCLatticeEventV2": "vpc_lattice",
    },
}


class _DeferredInitLoader(importlib.abc.Loader):
    """Makes a package module whose ``__init__`` (run by ``loader``) waits for a name it exports."""

    def __init__(self, loader: importlib.abc.Loader, exports: dict[str, str]) -> None:
        self._loader = loader
        self._exports = exports

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        _Deferred(module, self._loader, self._exports)

    def __getattr__(self, attr: str) -> Any:  # resources, source...: the real loader's
        return getattr(self._loader, attr)


class _Deferred:
    """The ``__getattr__`` and ``__dir__`` of a package module until its real ``__init__`` has run."""

    def __init__(self, module: ModuleType, loader: importlib.abc.Loader, exports: dict[str, str]) -> None:
        self.module, self.loader, self.exports = module, loader, exports
        self.lock = threading.RLock()
        self.started = False
        module.__getattr__ = self.getattr  # type: ignore[method-assign]
        module.__dir__ = self.dir  # type: ignore[method-assign]

    def getattr(self, attr: str) -> Any:
        name = self.module.__name__
        if not self.started:
            if attr in self.exports:
                value = getattr(importlib.import_module(f"{name}.{self.exports[attr]}"), attr)
                setattr(self.module, attr, value)
                return value
            if not attr.startswith("__") and importlib.util.find_spec(f"{name}.{attr}") is not None:
                return importlib.import_module(f"{name}.{attr}")  # which sets the attribute
        self.run_init()  # or waits for another thread running it
        try:
            return self.module.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None

    def dir(self) -> list[str]:
        self.run_init()
        return sorted(self.module.__dict__)

    def run_init(self) -> None:
        """Runs the package's real ``__init__`` on its module, once (a thread asking meanwhile
        waits for it): from then on, a normally imported package."""
        with self.lock:
            if self.started:  # done, or running in this thread (a name it asks for before defining)
                return
            self.started = True
            module = self.module
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader
            try:
                self.loader.exec_module(module)
            finally:
                del module.__getattr__, module.__dir__


class _DeferredInitFinder(importlib.abc.MetaPathFinder):
    """Finds the packages of ``EXPORTS`` as the path finder does, loaded by ``_DeferredInitLoader``."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in EXPORTS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return spec
        spec.loader = _DeferredInitLoader(spec.loader, EXPORTS[fullname])
        return spec


def install() -> None:
    """Puts the finder first on ``sys.meta_path`` (once); a package already imported is unchanged."""
    if not any(isinstance(finder, _DeferredInitFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferredInitFinder())


__all__ = ["EXPORTS", "install"]
