"""Finds and loads the tunnel engine (``azext_webapp._tunnel``) built for the running platform.

The extension ships as one universal wheel (``webapp-<version>-py3-none-any.whl``: the only kind
``az extension add --name`` installs), so the compiled engine cannot be chosen by pip from the
wheel's tags. Instead every build sits in a directory named for the platform it runs on::

    azext_webapp/_native/<os>_<machine>_<libc>/_tunnel.abi3.so      e.g. linux_x86_64_gnu

and :func:`load_engine` loads only the one whose name matches the running platform. The module is
built against CPython's stable ABI (``Py_LIMITED_API`` 3.10), so the Python version does not
matter; libwebsockets is linked into it; OpenSSL 3 (``libssl.so.3``) and libcurl
(``libcurl.so.4``) are the system's shared libraries, checked when it is loaded.

``setup.py`` imports this file on its own (not as part of the package) to learn where to build,
so it imports nothing from ``azext_webapp``. Every failure is an :class:`EngineUnavailableError`
(an ``ImportError``) whose ``str()`` is one line saying what to do.
"""
import importlib.machinery
import importlib.util
import os
import platform
import re
import sys

MODULE_NAME = "azext_webapp._tunnel"
FILENAME = "_tunnel.abi3.so"
NATIVE_DIR = os.path.dirname(os.path.abspath(__file__))
# What works where the native engine does not load: the portable engine (the default there).
SOURCE_HINT = ("Unset WEBAPP_ENGINE (or set it to portable) to use the portable engine, which runs on every "
               "platform; building the native one needs a clone of the webapp repository and its `make build` "
               "on 64-bit x86 Linux with glibc")

# Shared libraries the engine links dynamically -> the Debian/Ubuntu package that provides each.
SYSTEM_LIBRARIES = {
    "libssl.so.3": "libssl3",
    "libcrypto.so.3": "libssl3",
    "libcurl.so.4": "libcurl4",
    "libcap.so.2": "libcap2",
    "libz.so.1": "zlib1g",
}

_MACHINE_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686", "i586": "i686"}
_OS_NAMES = {"linux": "linux", "darwin": "macos", "win32": "windows", "cygwin": "cygwin"}


class EngineUnavailableError(ImportError):
    """The tunnel engine cannot be loaded here; ``str()`` is one line a user can act on."""

    def __init__(self, message, tag=None, reason=None):
        super().__init__(message)
        self.tag = tag
        self.reason = reason or message   # short: why the portable engine serves instead


def platform_tag(system=None, machine=None, libc=None, pointer_bits=None):
    """The running platform as ``<os>_<machine>_<libc>``, e.g. ``linux_x86_64_gnu``.

    Every argument defaults to the running interpreter's value; pass them to ask about another
    platform (a pure function then). ``machine`` is the interpreter's, not the kernel's: a 32-bit
    Python on a 64-bit x86 kernel is ``i686``."""
    system = _OS_NAMES.get(system or sys.platform, re.sub(r"\W", "", (system or sys.platform).lower()))
    machine = (machine or platform.machine() or "unknown").lower()
    machine = _MACHINE_ALIASES.get(machine, machine)
    bits = pointer_bits or (64 if sys.maxsize > 2 ** 32 else 32)
    if bits == 32 and machine == "x86_64":
        machine = "i686"
    elif bits == 32 and machine == "aarch64":
        machine = "armv7l"
    if libc is None:
        libc = _libc() if system == "linux" else None
    return "_".join(part for part in (system, machine, libc) if part)


def _libc():
    """``gnu`` (glibc), ``musl`` or ``unknownlibc`` for the running Linux interpreter."""
    try:
        if os.confstr("CS_GNU_LIBC_VERSION"):
            return "gnu"
    except (AttributeError, ValueError, OSError):
        pass
    multiarch = _config_var("MULTIARCH") or _config_var("SOABI") or ""
    if "musl" in multiarch:
        return "musl"
    name = platform.libc_ver()[0]
    if name == "glibc":
        return "gnu"
    if name or any(entry.startswith("ld-musl-") for entry in _listdir("/lib")):
        return "musl"
    return "unknownlibc"


def _config_var(name):
    import sysconfig
    return sysconfig.get_config_var(name)


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def available_tags(native_dir=NATIVE_DIR):
    """The platforms a build is present for in ``native_dir``, sorted."""
    return sorted(name for name in _listdir(native_dir)
                  if os.path.isfile(os.path.join(native_dir, name, FILENAME)))


def engine_path(tag, native_dir=NATIVE_DIR):
    """Where the build for ``tag`` lives (whether or not it exists)."""
    return os.path.join(native_dir, tag, FILENAME)


def no_build_message(tag, available):
    """The one line for a platform without a build (pure)."""
    included = ", ".join(available) if available else "none"
    return (f"webapp's tunnel engine has no build for this platform ({tag}); builds are included for: "
            f"{included}. {SOURCE_HINT}.")


def load_failure_message(tag, error_text):
    """The one line for a build that is present but does not load (pure): a missing system library
    names the library and the package to install."""
    first = (str(error_text).strip().splitlines() or ["unknown error"])[0]
    missing = re.search(r"(lib[\w+.-]*\.so[\w.]*): cannot open shared object file", first)
    if missing:
        library = missing.group(1)
        package = SYSTEM_LIBRARIES.get(library)
        install = f" (Debian/Ubuntu: apt-get install {package})" if package else ""
        return (f"webapp's tunnel engine ({tag}) needs the system library {library}, which is not installed "
                f"on this machine; install it{install} and run the command again.")
    return (f"webapp's tunnel engine ({tag}) could not be loaded: {first}. It needs glibc, OpenSSL 3 "
            f"(libssl.so.3) and libcurl (libcurl.so.4) from a current Linux distribution. {SOURCE_HINT}.")


def load_engine(package_dir=None, tag=None):
    """Load ``azext_webapp._tunnel`` from the build for the running platform and return it.

    package_dir: the ``azext_webapp`` directory of a build tree to load from (default: this
    package); tag: the platform (default: :func:`platform_tag`)."""
    loaded = sys.modules.get(MODULE_NAME)
    if loaded is not None:
        return loaded
    native_dir = os.path.join(package_dir, "_native") if package_dir else NATIVE_DIR
    tag = tag or platform_tag()
    path = engine_path(tag, native_dir)
    if not os.path.isfile(path):
        raise EngineUnavailableError(no_build_message(tag, available_tags(native_dir)), tag,
                                     f"no native build for this platform ({tag})")
    loader = importlib.machinery.ExtensionFileLoader(MODULE_NAME, path)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path, loader=loader)
    try:
        module = importlib.util.module_from_spec(spec)  # dlopen + PyInit__tunnel
        loader.exec_module(module)
    except ImportError as err:
        first = (str(err).strip().splitlines() or ["unknown error"])[0]
        raise EngineUnavailableError(load_failure_message(tag, err), tag,
                                     f"the native build for {tag} does not load here ({first})") from None
    sys.modules[MODULE_NAME] = module
    return module
