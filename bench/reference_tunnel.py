"""Run the Azure CLI's own tunnel exactly as `az webapp create-remote-connection` does.

`create_tunnel` builds a `TunnelServer('127.0.0.1', port, scm_url, auth_string, instance)`, starts
`start_server` on a daemon thread and keeps the main thread sleeping.  This script does the same
with the `TunnelServer` class of the installed azure-cli, minus the ARM look-ups, and prints
`Port N is open` so that the benchmark can wait for it.  Credentials come from the environment.
"""
import base64
import os
import signal
import sys
import threading
import time


def main():
    from azure.cli.command_modules.appservice.tunnel import TunnelServer

    scm_url = sys.argv[1]
    user, password = os.environ["WEBAPP_SCM_USER"], os.environ["WEBAPP_SCM_PASSWORD"]
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    server = TunnelServer("127.0.0.1", 0, scm_url, auth, None)
    thread = threading.Thread(target=server.start_server, daemon=True)
    thread.start()
    print(f"Port {server.get_port()} is open", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while thread.is_alive():
            time.sleep(5)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
