"""Fingerprints of code: a hash that changes when a function's behaviour may have changed.

`code_fingerprint(fn)` is what a result cache keys on besides its settings, so that editing a
function's body, a default argument, a captured value or a helper it calls invalidates the
results computed by the old version. The hash is the same in every process (no `id()`, no
memory addresses, independent of `PYTHONHASHSEED`) for the same source and the same captured
values. What is hashed, by kind of object:

* a Python function: its bytecode (`co_code`), constants (nested code objects -- lambdas, inner
  functions -- recursively), the names it uses, default arguments, the values of its closure
  cells, and the module-level globals it reads;
* `functools.partial`: the function and its bound arguments; anything with `__wrapped__` (such
  as `jax.jit`-wrapped functions): the wrapped function; a bound method: the function and the
  object it is bound to; a callable object: its class's `__call__` and its fields;
* plain data: numbers, strings, bytes, None, arrays (dtype, shape, bytes), and lists, tuples,
  dicts and sets of these; dataclasses, NamedTuples and JAX pytrees by their fields;
* functions and classes of installed packages (site-packages, the standard library) and
  built-ins: by module, name and the package's version (not by their code);
* modules: an installed module by name and package version; a module of your own code (not in
  site-packages) by name and the SHA-256 of its source file (of all `.py` files under it for a
  package), and a class of your own code by name and its module's source hash;
* a list, dict or set that the function appends or adds to (`calls.append(x)`, `seen.update(...)`,
  a log of calls filled while tracing) is counted by its type only, since its content is an
  output of the function, not an input;
* anything else: its type and `repr` with memory addresses removed, and a `UserWarning` is
  issued once per type, because changes inside such an object are not seen.

Line numbers and comments are not part of the hash: moving a function or editing a comment in
it keeps its fingerprint. The bytecode differs between Python versions, so a new Python gives
new fingerprints.
"""
from __future__ import annotations

import collections
import dataclasses
import dis
import enum
import functools
import hashlib
import importlib.metadata
import re
import site
import sys
import sysconfig
import types
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["code_fingerprint", "source_fingerprint"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+|0x[0-9a-fA-F]{6,}")
_SCALARS = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))
_WARNED: set[str] = set()
_CONTAINERS = (list, dict, set, collections.deque)
_MUTATORS = frozenset({"append", "extend", "insert", "add", "update", "setdefault", "appendleft", "extendleft"})


def code_fingerprint(fn: Callable[..., Any], length: int = 16) -> str:
    """The first `length` hex digits of a SHA-256 over `fn`'s code and the values it uses.

    Args:
      fn: a function, `functools.partial`, jitted function, bound method or callable object.
      length: hex digits kept (at most 64).

    Returns:
      A hex string, equal across processes for the same code and captured values.
    """
    h = hashlib.sha256()
    _Hasher(h).add(fn)
    return h.hexdigest()[:length]


@functools.lru_cache(maxsize=None)
def _installed_roots() -> tuple[str, ...]:
    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    return tuple(str(Path(p).resolve()) for p in paths if p)


def _module_file(module_name: str | None) -> Path | None:
    module = sys.modules.get(module_name or "")
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _is_installed(module_name: str | None) -> bool:
    """True for built-ins and modules of installed packages or the standard library."""
    if module_name not in sys.modules or module_name in sys.builtin_module_names:
        return True  # a built-in module, or one never imported (nothing local to hash)
    file = _module_file(module_name)
    return file is not None and str(file).startswith(_installed_roots())


def _is_installed_code(code: types.CodeType) -> bool:
    """True for code whose file lies in an installed package or the standard library."""
    return code.co_filename.startswith("/") and str(Path(code.co_filename).resolve()).startswith(_installed_roots())


@functools.lru_cache(maxsize=None)
def _version(top: str) -> str:
    try:
        return importlib.metadata.version(top)
    except Exception:
        return str(getattr(sys.modules.get(top), "__version__", ""))


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_fingerprint(module_name: str) -> str:
    """What identifies a module: `name==version` when it is installed (or built in); otherwise the
    SHA-256 of its source file, or of every `.py` file under it for a package."""
    top = module_name.split(".")[0]
    if _is_installed(module_name):
        return f"{module_name}=={_version(top)}"
    file = _module_file(module_name)
    if file is None or not file.is_file():  # a script run with -c, a namespace package
        return f"{module_name}#nofile"
    files = sorted(file.parent.rglob("*.py")) if file.name == "__init__.py" else [file]
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.relative_to(file.parent)}|{_file_digest(str(path), path.stat().st_mtime_ns)};".encode())
    return f"{module_name}#{h.hexdigest()}"


class _Hasher:
    """Feeds a canonical byte encoding of objects into a hash (see the module docstring)."""

    def __init__(self, h, memo: dict[int, str] | None = None, active: set[int] | None = None):
        self.h = h
        self.memo = {} if memo is None else memo  # id -> digest of functions already hashed in this call
        self.active = set() if active is None else active  # objects on the current path (recursion guard)

    def tag(self, *parts: Any) -> None:
        self.h.update(("|".join(str(p) for p in parts) + ";").encode())

    def add(self, obj: Any) -> None:
        if id(obj) in self.active:  # a function that calls itself, a self-referencing container
            self.tag("cycle", type(obj).__qualname__, getattr(obj, "__qualname__", ""))
            return
        self.active.add(id(obj))
        try:
            self._dispatch(obj)
        finally:
            self.active.discard(id(obj))

    def _dispatch(self, obj: Any) -> None:
        if isinstance(obj, _SCALARS):
            self.tag(type(obj).__name__, repr(obj))
        elif isinstance(obj, (np.ndarray, np.generic)) or _is_jax_array(obj):
            self._array(obj)
        elif isinstance(obj, (types.FunctionType, types.MethodType, functools.partial, types.CodeType)):
            self._callable(obj)
        elif isinstance(obj, types.ModuleType):
            self.tag("module", source_fingerprint(obj.__name__))
        elif isinstance(obj, type):
            self._class(obj)
        elif isinstance(obj, enum.Enum):
            self.tag("enum", type(obj).__qualname__, obj.name)
        elif isinstance(obj, (list, tuple)):
            self.tag(type(obj).__qualname__, len(obj))
            for item in obj:
                self.add(item)
        elif isinstance(obj, dict):
            self._mapping(type(obj).__qualname__, obj)
        elif isinstance(obj, (set, frozenset)):
            self.tag(type(obj).__qualname__, *sorted(_sub_digest(item) for item in obj))
        elif hasattr(obj, "__wrapped__"):  # jax.jit, functools.wraps
            self.tag("wrapped", type(obj).__qualname__)
            self.add(obj.__wrapped__)
        elif isinstance(obj, (types.BuiltinFunctionType, np.ufunc)):
            self._named(obj)
        else:
            self._object(obj)

    def _array(self, obj: Any) -> None:
        arr = np.ascontiguousarray(np.asarray(obj))
        self.tag("array", arr.dtype.str, arr.shape)
        self.h.update(arr.tobytes())

    def _mapping(self, label: str, mapping: dict) -> None:
        keys = sorted(mapping, key=_sub_digest)
        self.tag(label, len(keys))
        for k in keys:
            self.add(k)
            self.add(mapping[k])

    def _named(self, obj: Any) -> None:
        module = getattr(obj, "__module__", None) or ""
        self.tag("named", module, getattr(obj, "__qualname__", getattr(obj, "__name__", "")),
                 _version(module.split(".")[0]) if module else "")

    def _class(self, cls: type) -> None:
        if _is_installed(cls.__module__):
            self._named(cls)
            return
        source = source_fingerprint(cls.__module__)
        self.tag("class", cls.__qualname__, source)
        if source.endswith("#nofile"):  # defined in a notebook or `python -c`: hash its methods and data
            members = {k: getattr(v, "__func__", getattr(v, "fget", v)) for k, v in vars(cls).items()
                       if not (k.startswith("__") and k.endswith("__")) or isinstance(v, types.FunctionType)}
            self._mapping("members", members)
            self.add(cls.__bases__)

    def _callable(self, obj: Any) -> None:
        if isinstance(obj, functools.partial):
            self.tag("partial", len(obj.args))
            self.add(obj.func)
            self.add(obj.args)
            self.add(dict(obj.keywords))
        elif isinstance(obj, types.MethodType):
            self.tag("method")
            self.add(obj.__func__)
            self.add(obj.__self__)
        elif isinstance(obj, types.CodeType):
            self._code(obj)
        elif _is_installed_code(obj.__code__):
            self._named(obj)
        else:  # each function is hashed once per call, however many functions use it
            if id(obj) not in self.memo:
                child = _Hasher(hashlib.sha256(), self.memo, self.active)
                child._function(obj)
                self.memo[id(obj)] = child.h.hexdigest()
            self.tag("function", self.memo[id(obj)])

    def _function(self, fn: types.FunctionType) -> None:
        self.tag("function", fn.__qualname__)
        self._code(fn.__code__)
        self.add(fn.__defaults__)
        self.add(dict(fn.__kwdefaults__ or {}))
        sinks = _sink_names(fn.__code__)
        self.tag("closure", *fn.__code__.co_freevars)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                self._value(cell.cell_contents, name in sinks)
            except ValueError:  # an empty cell (a name assigned later)
                self.tag("empty-cell")
        used = sorted(n for n in _global_names(fn.__code__) if n in fn.__globals__)
        self.tag("globals", *used)
        for name in used:
            self._value(fn.__globals__[name], name in sinks)

    def _value(self, value: Any, sink: bool) -> None:
        """A captured value; a list/dict/set the function only adds to (a log) counts by its type."""
        if sink and isinstance(value, _CONTAINERS):
            self.tag("sink", type(value).__qualname__)
        else:
            self.add(value)

    def _code(self, code: types.CodeType) -> None:
        self.tag("code", code.co_name, code.co_argcount, code.co_kwonlyargcount, code.co_flags,
                 *code.co_names, "/", *code.co_varnames, "/", *code.co_freevars)
        self.h.update(code.co_code)
        self.tag("consts", len(code.co_consts))
        for const in code.co_consts:
            self.add(const)

    def _object(self, obj: Any) -> None:
        cls = type(obj)
        if dataclasses.is_dataclass(obj):
            self.tag("dataclass")
            self._class(cls)
            self._mapping("fields", {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
            return
        leaves = _pytree_leaves(obj)
        if leaves is not None:
            self.tag("pytree")
            self._class(cls)
            self.add(leaves)
            return
        if callable(obj) and isinstance(getattr(obj, "__dict__", None), dict):
            self.tag("callable-object")
            self._class(cls)
            self.add(getattr(cls, "__call__"))
            self._mapping("fields", dict(vars(obj)))
            return
        if cls.__qualname__ not in _WARNED:
            _WARNED.add(cls.__qualname__)
            warnings.warn(f"code_fingerprint: a {cls.__module__}.{cls.__qualname__} is identified by its repr only; "
                          "changes inside it are not detected", UserWarning, stacklevel=4)
        try:
            text = _ADDRESS.sub("", repr(obj))
        except Exception:  # a repr that fails: the type alone
            text = "<no repr>"
        self.tag("repr", cls.__module__, cls.__qualname__, text)


def _sub_digest(obj: Any) -> str:
    """A stand-alone digest of `obj`, used to order dict keys and set items canonically."""
    h = hashlib.sha256()
    _Hasher(h).add(obj)
    return h.hexdigest()


def _sink_names(code: types.CodeType) -> set[str]:
    """Global or captured names whose object the code (or code nested in it) calls a mutating
    method on, such as `calls.append(x)`: such a container is an output of the function (a log
    of calls), and its growing content must not change the fingerprint."""
    names: set[str] = set()
    ins = list(dis.get_instructions(code))
    for a, b in zip(ins, ins[1:]):
        if (a.opname in ("LOAD_GLOBAL", "LOAD_DEREF", "LOAD_NAME") and b.opname in ("LOAD_METHOD", "LOAD_ATTR")
                and b.argval in _MUTATORS):
            names.add(a.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _sink_names(const)
    return names


def _global_names(code: types.CodeType) -> set[str]:
    """Names a code object (and the code nested in it) may read from its module's globals."""
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _is_jax_array(obj: Any) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(obj, jax.Array)


def _pytree_leaves(obj: Any) -> list | None:
    """[structure, *leaves] of a registered JAX pytree node (None when `obj` is a leaf)."""
    jax = sys.modules.get("jax")
    if jax is None:
        return None
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    if len(leaves) == 1 and leaves[0] is obj:
        return None
    return [_ADDRESS.sub("", str(treedef)), *leaves]
