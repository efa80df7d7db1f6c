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


def main(argv):
    direction, scm_url, instance, local, remote = argv
    from azext_webapp import _copy, tunnel
    from azext_webapp._arm import Credential, Target
    from azext_webapp._exec_channel import ExecEndpoint
    from azext_webapp._exec_run import Stop
    user, password = os.environ["WEBAPP_SCM_USER"], os.environ["WEBAPP_SCM_PASSWORD"]
    credential = Credential("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(), "Basic")
    endpoint = ExecEndpoint(tunnel, Target("bench", "bench", None), scm_url, credential)
    started = time.perf_counter()
    if direction == "up":
        _copy.upload(endpoint, instance, local, remote, Stop())
    else:
        _copy.download(endpoint, instance, remote, local, Stop())
    print(f"{time.perf_counter() - started:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
