"""Help text (YAML) for ``az webapp remote-connection``."""

from knack.help_files import helps  # pylint: disable=unused-import

helps['webapp remote-connection'] = """
type: group
short-summary: Open TCP tunnels to the containers of App Service on Linux apps.
long-summary: >
    The tunnel runs over the app's SCM (Kudu) site, authenticated with the app's publishing
    credentials or, when Basic auth is disabled for SCM, with the Microsoft Entra token that
    az holds. Every local connection gets its own WebSocket, so several ssh, scp or sftp
    sessions (or a debugger) can share one tunnel.
"""

helps['webapp remote-connection create'] = """
type: command
short-summary: Open a tunnel from a local port to the SSH server (or remote debugger) of a Linux web app.
long-summary: >
    Checks that the app runs on Linux and that its container answers, then listens on a local
    port until Ctrl+C, SIGTERM or --timeout. Connect with `ssh root@127.0.0.1 -p PORT`
    (password `Docker!` on the built-in images). Add --verbose to log each connection.
examples:
  - name: Open a tunnel on a free local port, then connect with ssh.
    text: |
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp
  - name: Open a tunnel on local port 21382 in the background (as in Cloud Shell).
    text: |
        az webapp remote-connection create --resource-group MyResourceGroup --name MyWebApp --port 21382 &
        ssh root@127.0.0.1 -p 21382
  - name: Open a tunnel to a deployment slot.
    text: |
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp --slot staging
  - name: Open a tunnel to one instance of a scaled-out app.
    text: |
        az webapp list-instances -g MyResourceGroup -n MyWebApp --query "[].name" -o tsv
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp --instance INSTANCE_NAME
  - name: Keep the tunnel open for 10 minutes only.
    text: |
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp --timeout 600
  - name: Tunnel to another port in the container, listening on all local IPv4 addresses.
    text: |
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp --target-port 9229 --bind 0.0.0.0 -p 9229
"""
