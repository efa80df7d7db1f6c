"""Build and package the ``webapp`` Azure CLI extension.

The tunnel engine is a C extension (``azext_webapp._tunnel``) built from ``native/`` against
the system's libwebsockets, OpenSSL and libcurl, located with pkg-config.  It uses only
CPython's stable ABI, so one binary loads in every CPython version ``az`` may bundle.
libwebsockets is linked in statically (users need no libwebsockets package); OpenSSL and libcurl
stay the system's shared libraries.

The compiled file goes to ``azext_webapp/_native/<platform>/_tunnel.abi3.so`` (``<platform>`` as
``azext_webapp/_native/__init__.py`` computes it, e.g. ``linux_x86_64_gnu``), both in place
(``build_ext --inplace``) and in the wheel, which is universal (``py3-none-any``): ``az extension
add --name`` installs no other kind. The loader there loads the file only on a matching platform.
"""
import glob
import importlib.util
import os
import shlex
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
# WEBAPP_VERSION overrides it for test builds (tools/build_index.py builds newer versions for `az extension update`).
VERSION = os.environ.get("WEBAPP_VERSION", "1.1.0")

# pkg-config name -> the Debian package that provides it
NATIVE_DEPENDENCIES = {
    "libwebsockets": "libwebsockets-dev",
    "openssl": "libssl-dev",
    "libcurl": "libcurl4-openssl-dev",
}

# The oldest CPython the current azure-cli supports (its Requires-Python is >=3.10).
LIMITED_API = "0x030A0000"


def _native_loader():
    """azext_webapp/_native/__init__.py on its own (importing azext_webapp would need azure-cli)."""
    path = os.path.join(HERE, "azext_webapp", "_native", "__init__.py")
    spec = importlib.util.spec_from_file_location("_webapp_native_loader", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        sys.exit("error: pkg-config not found; install it with: apt-get install pkg-config")
    return shlex.split(out)


def _native_flags():
    missing = [pkg for name, pkg in NATIVE_DEPENDENCIES.items()
               if subprocess.run(["pkg-config", "--exists", name]).returncode != 0]
    if missing:
        sys.exit("error: missing native libraries; install them with: apt-get install " + " ".join(missing))
    names = list(NATIVE_DEPENDENCIES)
    shared = [name for name in names if name != "libwebsockets"]
    return _pkg_config("--cflags", *names), _static_libwebsockets() + _pkg_config("--libs", *shared)


def _static_libwebsockets():
    """Link flags for libwebsockets.a (Debian's is PIC) and what it needs from the system.

    Its pkg-config --static private libraries (-lcap), plus zlib (deflate*) and libdl, which it
    uses without declaring. --exclude-libs keeps its symbols out of the module's dynamic table."""
    libdir = _pkg_config("--variable=libdir", "libwebsockets")
    archive = os.path.join(libdir[0] if libdir else "/usr/lib", "libwebsockets.a")
    if not os.path.isfile(archive):
        sys.exit(f"error: {archive} not found (the static libwebsockets library); install it with: "
                 "apt-get install libwebsockets-dev")
    private = [flag for flag in _pkg_config("--libs", "--static", "libwebsockets")
               if flag.startswith("-l") and flag != "-lwebsockets"]
    return ["-Wl,--as-needed", archive, "-Wl,--exclude-libs,ALL"] + private + ["-lz", "-ldl"]


def _extensions():
    cflags, libs = _native_flags()
    extra_compile = ["-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden"] + cflags
    if os.environ.get("WEBAPP_WERROR"):
        extra_compile.append("-Werror")
    extra_link = list(libs)
    sanitize = os.environ.get("WEBAPP_SANITIZE")  # e.g. "address,undefined" or "thread"
    if sanitize:
        extra_compile += ["-fsanitize=" + sanitize, "-fno-omit-frame-pointer", "-O1", "-g"]
        extra_link += ["-fsanitize=" + sanitize]
    # Built as azext_webapp/_native/<platform>/_tunnel.abi3.so; loaded as azext_webapp._tunnel.
    return [Extension(
        "azext_webapp._native." + _native_loader().platform_tag() + "._tunnel",
        sources=sorted(glob.glob("native/*.c")),  # lws_stdio.c among them: see that file
        include_dirs=["native"],
        # Without the headers here a header-only change leaves every object as it was: a module
        # whose files disagree about struct layouts (seen: garbled error kinds under ASan). The
        # reason table is such a header too (native/tn_err.h includes it).
        depends=sorted(glob.glob("native/*.h")) + ["azext_webapp/_reasons.def"],
        define_macros=[("Py_LIMITED_API", LIMITED_API), ("_GNU_SOURCE", None)],
        extra_compile_args=extra_compile,
        extra_link_args=extra_link,
        py_limited_api=True,
    )]


def _generate_limits():
    """native/tn_limits.h from azext_webapp/engine_limits.json (tools/gen_limits.py): the C compiled
    here gets the sizes the portable engine reads from that file."""
    spec = importlib.util.spec_from_file_location("_webapp_gen_limits", os.path.join(HERE, "tools", "gen_limits.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module.main([]):
        sys.exit("error: cannot write native/tn_limits.h")


class BuildExt(build_ext):
    """build_ext that first writes native/tn_limits.h, and whose --inplace also creates
    azext_webapp/_native/<platform>/ (not a package)."""

    def run(self):
        _generate_limits()
        super().run()

    def copy_extensions_to_source(self):
        for ext in self.extensions:
            self.mkpath(os.path.dirname(self.get_ext_fullpath(ext.name)))
        super().copy_extensions_to_source()


class UniversalWheel(bdist_wheel):
    """A ``py3-none-any`` wheel although it carries the compiled engine.

    The engine's platform is in its directory name and checked when it is loaded, and it uses only
    the stable ABI, so the wheel's tags need not (and, for `az extension add --name`, must not)
    say either. The wheel stays "Root-Is-Purelib: false" (it holds a binary): installers put it in
    platlib, which for az's `pip install --target` is the same directory."""

    def get_tag(self):
        return "py3", "none", "any"


setup(
    name="webapp",
    version=VERSION,
    description="Fast, verified SSH tunnels to App Service on Linux containers",
    long_description=open("README.md", encoding="utf-8").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="MIT",
    author="webapp contributors",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: C",
        "Operating System :: POSIX :: Linux",
    ],
    python_requires=">=3.10",
    packages=find_packages(include=["azext_webapp", "azext_webapp.*"]),
    # engine_limits.json: the shared limits; _reasons.def: the failure vocabulary the native engine
    # compiles in. The portable engine reads both at import (Windows and macOS run from the wheel alone)
    package_data={"azext_webapp": ["azext_metadata.json", "engine_limits.json", "_reasons.def"]},
    ext_modules=_extensions() if not os.environ.get("WEBAPP_NO_NATIVE") else [],
    cmdclass={"build_ext": BuildExt, "bdist_wheel": UniversalWheel},
    install_requires=[],
)
