"""Build and package the ``webapp`` Azure CLI extension.

The tunnel engine is a C extension (``azext_webapp._tunnel``) built from ``native/`` against
the system's libwebsockets, OpenSSL and libcurl, located with pkg-config.  It uses only
CPython's stable ABI, so one binary loads in every CPython version ``az`` may bundle.
"""
import glob
import os
import shlex
import subprocess
import sys

from setuptools import Extension, find_packages, setup

# WEBAPP_VERSION overrides it for test builds (tools/build_index.py builds newer versions for `az extension update`).
VERSION = os.environ.get("WEBAPP_VERSION", "0.1.0")

# pkg-config name -> the Debian package that provides it
NATIVE_DEPENDENCIES = {
    "libwebsockets": "libwebsockets-dev",
    "openssl": "libssl-dev",
    "libcurl": "libcurl4-openssl-dev",
}

# The oldest CPython the current azure-cli supports (its Requires-Python is >=3.10).
LIMITED_API = "0x030A0000"


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
    return _pkg_config("--cflags", *names), _pkg_config("--libs", *names)


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
    return [Extension(
        "azext_webapp._tunnel",
        sources=sorted(glob.glob("native/*.c")),
        include_dirs=["native"],
        define_macros=[("Py_LIMITED_API", LIMITED_API), ("_GNU_SOURCE", None)],
        extra_compile_args=extra_compile,
        extra_link_args=extra_link,
        py_limited_api=True,
    )]


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
    package_data={"azext_webapp": ["azext_metadata.json"]},
    ext_modules=_extensions() if not os.environ.get("WEBAPP_NO_NATIVE") else [],
    install_requires=[],
)
