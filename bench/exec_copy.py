"""One `az webapp remote-connection cp` through the exec channel, without az around it: what `make
bench` times (the engine, the marker protocol and the container's terminal; not az's start-up).

    python -m bench.exec_copy up|down SCM_URL INSTANCE LOCAL REMOTE

Credentials from WEBAPP_SCM_USER and WEBAPP_SCM_PASSWORD, the engine from WEBAPP_ENGINE, the CA from
REQUESTS_CA_BUNDLE (as `python -m azext_webapp.tunnel`). Prints the copy's seconds.
"""
import base64
import os
import sys
import time
from types import SimpleNamespace


def main(argv):
    direction, scm_url, instance, local, remote = argv
    from azext_webapp import _copy, tunnel
    from azext_webapp._arm import Credential, Target
    user, password = os.environ["WEBAPP_SCM_USER"], os.environ["WEBAPP_SCM_PASSWORD"]
    credential = Credential("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(), "Basic")
    # what the hops up to the credentials give the commands (_exec_channel.resolve_exec)
    endpoint = SimpleNamespace(tunnel=tunnel, target=Target("bench", "bench", None), scm_url=scm_url,
                               credential=credential, auth_kind="Basic")
    started = time.perf_counter()
    if direction == "up":
        _copy.upload(endpoint, instance, local, remote)
    else:
        _copy.download(endpoint, instance, remote, local)
    print(f"{time.perf_counter() - started:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
