"""The sandbox's browser SSH service (issue 16, part B): what Kudu's /webssh/ proxies to.

    service = WebsshService(log_path).start()     # service.port, service.token
    ...
    service.stop()

A separate process (`python -m sandbox.webssh`, __main__.py) that the SCM server's /webssh/
proxy reaches on 127.0.0.1: server.py serves the page (static/), the xterm.js bundle
(assets.py) and the terminal's WebSocket (websocket.py), which bridge.py joins to an SSH shell
that session.py opens with paramiko, offering only the portal's ciphers and MACs.
"""
from .service import WebsshService

__all__ = ["WebsshService"]
