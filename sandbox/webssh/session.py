"""The SSH side of a browser terminal: paramiko logs in to an instance's sshd as the portal does.

App Service's web SSH (Kudu's WebSSH2 fork) signs in as root with the documented password,
by password and then keyboard-interactive, offering ONLY the ciphers and MACs below (that is
why the documentation asks custom images for them) and only ECDH/group-exchange key exchanges
and ECDSA (or ssh-rsa) host keys. Every failure becomes a SessionError whose
message says, in the user's terms, what is wrong with the container and what fixes it.
"""
from __future__ import annotations

import logging
import socket
import threading

import paramiko

CIPHERS = ("aes128-cbc", "3des-cbc", "aes256-cbc", "aes128-ctr", "aes256-ctr", "aes192-ctr")
MACS = ("hmac-sha1", "hmac-sha1-96", "hmac-md5-96")
# The portal's client also offers diffie-hellman-group14-sha1 and ssh-rsa host keys (SHA-1
# signatures), which this paramiko no longer has; OpenSSH 8.8 and later sshd refuse to sign with
# ssh-rsa anyway, so against such an sshd the portal, too, ends up with these.
KEX = ("ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
       "diffie-hellman-group-exchange-sha256")
HOST_KEY_TYPES = ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
# The lines the documentation's sshd_config for custom images has (docs/CONTAINERS.md).
DOCS_CIPHERS = "Ciphers aes128-cbc,3des-cbc,aes256-cbc"
DOCS_MACS = "MACs hmac-sha1,hmac-sha1-96"
USER = "root"
PASSWORD = "Docker!"          # App Service's documented root password for custom images
CONTAINER_PORT = 2222
TERM = "xterm-256color"
CONNECT_SECONDS = 10.0
HANDSHAKE_SECONDS = 20.0
EXIT_STATUS_SECONDS = 5.0

_sequence = iter(range(1, 1 << 62))
_sequence_lock = threading.Lock()


class SessionError(Exception):
    """str(e) is the message the page shows (no secret in it)."""


def _algorithms_message(instance: str, kind: str, offered_by_server: str | None) -> str:
    server = f" Its sshd offers only: {offered_by_server}." if offered_by_server else ""
    return (f"The SSH server on port {CONTAINER_PORT} of instance {instance} accepts none of the "
            f"{kind} that the web SSH offers (ciphers: {', '.join(CIPHERS)}; MACs: "
            f"{', '.join(MACS)}).{server} Allow at least one of each in the container's "
            f"/etc/ssh/sshd_config, as the documentation's sshd_config for custom images does: \"{DOCS_CIPHERS}\" and "
            f"\"{DOCS_MACS}\", then restart sshd.")


class _KexListener(logging.Handler):
    """Keeps what the server offered from paramiko's debug log of the key exchange: the
    client-to-server cipher and MAC lists are what the page needs to name."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.offered: dict = {}

    def emit(self, record):
        try:
            text = record.getMessage()
        except Exception:
            return
        for key in ("client encrypt", "client mac"):
            if text.startswith(key + ": "):
                self.offered[key] = text[len(key) + 2:]


class Shell:
    """A logged-in interactive shell on an instance: recv()/send()/resize()/close()."""

    def __init__(self, port: int, instance: str, cols: int, rows: int):
        self.instance = instance
        self._transport = None
        self.channel = None
        if not port:
            raise SessionError(
                f"Nothing is listening on port {CONTAINER_PORT} of instance {instance}: the "
                f"container exposes no port {CONTAINER_PORT}. App Service's SSH needs the "
                f"container's sshd to listen on port {CONTAINER_PORT} (sshd_config: "
                f"\"Port {CONTAINER_PORT}\").")
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_SECONDS)
        except ConnectionRefusedError:
            raise SessionError(
                f"Nothing is listening on port {CONTAINER_PORT} of instance {instance}: is the "
                f"container's sshd running, and does its sshd_config say \"Port "
                f"{CONTAINER_PORT}\"?") from None
        except OSError as e:
            raise SessionError(f"Could not connect to port {CONTAINER_PORT} of instance "
                               f"{instance}: {e.strerror or e}") from None
        try:
            self._login(sock, cols, rows)
        except BaseException:
            self.close()
            sock.close()
            raise

    def _login(self, sock, cols: int, rows: int):
        with _sequence_lock:
            channel = f"sandbox.webssh.ssh.{next(_sequence)}"
        listener = _KexListener()
        logger = logging.getLogger(channel)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False        # paramiko's debug chatter stays out of the service log
        logger.addHandler(listener)
        t = self._transport = paramiko.Transport(sock)
        t.set_log_channel(channel)
        t.auth_timeout = t.banner_timeout = HANDSHAKE_SECONDS
        options = t.get_security_options()
        options.ciphers = CIPHERS
        options.digests = MACS
        options.kex = KEX
        options.key_types = HOST_KEY_TYPES
        try:
            t.start_client(timeout=HANDSHAKE_SECONDS)
        except paramiko.IncompatiblePeer as e:
            text = str(e)
            if "cipher" in text:
                raise SessionError(_algorithms_message(
                    self.instance, "ciphers", listener.offered.get("client encrypt"))) from None
            if "mac" in text:
                raise SessionError(_algorithms_message(
                    self.instance, "MACs", listener.offered.get("client mac"))) from None
            if "host key" in text:
                raise SessionError(
                    f"The SSH server on port {CONTAINER_PORT} of instance {self.instance} has no "
                    f"host key of a type the web SSH accepts ({', '.join(HOST_KEY_TYPES)}). Give the "
                    f"container an ECDSA host key (`ssh-keygen -A` makes one) and restart sshd.") from None
            if "kex" in text:
                raise SessionError(
                    f"The SSH server on port {CONTAINER_PORT} of instance {self.instance} accepts none "
                    f"of the key exchanges the web SSH offers ({', '.join(KEX)}). Allow one of them in "
                    f"the container's sshd_config (KexAlgorithms) and restart sshd.") from None
            raise SessionError(f"The SSH server of instance {self.instance} and the web SSH "
                               f"share no algorithm: {text}") from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise SessionError(self._handshake_failure(e)) from None
        finally:
            logger.removeHandler(listener)
        self._authenticate(t)
        try:
            ch = self.channel = t.open_session(timeout=HANDSHAKE_SECONDS)
            ch.get_pty(term=TERM, width=cols, height=rows)
            ch.invoke_shell()
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise SessionError(f"Instance {self.instance}'s sshd accepted the login but refused "
                               f"a shell with a terminal: {e}") from None

    def _handshake_failure(self, e) -> str:
        text = str(e)
        if "banner" in text.lower():
            return (f"Port {CONTAINER_PORT} of instance {self.instance} did not answer as an SSH "
                    f"server does (no SSH banner): is something other than sshd listening there?")
        if "timed out" in text.lower() or isinstance(e, socket.timeout):
            return (f"The SSH server on port {CONTAINER_PORT} of instance {self.instance} did not "
                    f"finish the handshake within {HANDSHAKE_SECONDS:.0f} s.")
        return (f"The SSH handshake with port {CONTAINER_PORT} of instance {self.instance} "
                f"failed: {text or type(e).__name__}")

    def _authenticate(self, t):
        refused = SessionError(
            f"The SSH server of instance {self.instance} refused the password for {USER}. App "
            f"Service's web SSH signs in as {USER} with the password the documentation gives for "
            f"custom images: set it in the image (e.g. chpasswd in the Dockerfile).")
        try:
            remaining = t.auth_password(USER, PASSWORD, fallback=False)
            if not remaining:
                return
            kinds = list(remaining)     # partial success: the server wants another method too
        except paramiko.BadAuthenticationType as e:
            kinds = e.allowed_types
        except paramiko.AuthenticationException:
            kinds = ["keyboard-interactive"]
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise SessionError(f"The SSH server of instance {self.instance} ended the connection "
                               f"during login: {e or type(e).__name__}") from None
        if "keyboard-interactive" not in kinds:
            if "password" in kinds:
                raise refused
            raise SessionError(
                f"The SSH server of instance {self.instance} accepts neither password nor "
                f"keyboard-interactive login for {USER} (it allows: {', '.join(kinds) or 'none'}); "
                f"App Service's web SSH needs password login (sshd_config: "
                f"\"PasswordAuthentication yes\", \"PermitRootLogin yes\").")
        try:
            t.auth_interactive(USER, lambda title, instructions, prompts: [PASSWORD] * len(prompts))
        except paramiko.BadAuthenticationType:
            raise refused from None
        except paramiko.AuthenticationException:
            raise refused from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise SessionError(f"The SSH server of instance {self.instance} ended the connection "
                               f"during login: {e or type(e).__name__}") from None

    def recv(self) -> bytes:
        """Terminal output; b"" once the shell's output has ended."""
        try:
            return self.channel.recv(32768)
        except (OSError, EOFError, paramiko.SSHException):
            return b""

    def send(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass        # the reader sees the end and says why

    def resize(self, cols: int, rows: int) -> None:
        try:
            self.channel.resize_pty(width=cols, height=rows)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def ended_message(self) -> tuple:
        """(state, message) once recv() has returned b"": ("closed", ...) when the shell
        exited, ("error", ...) when the connection was lost first."""
        ch = self.channel
        # The exit status may arrive just after the end of output; paramiko sets the event on
        # either, and also when the connection drops (status -1), so the wait is short.
        ch.status_event.wait(EXIT_STATUS_SECONDS)
        status = ch.exit_status if ch.exit_status_ready() else -1
        if status != -1:
            return "closed", (f"The session on instance {self.instance} ended "
                              f"(the shell exited with status {status}).")
        if self._transport is not None and self._transport.is_active():
            return "closed", f"The session on instance {self.instance} ended."
        return "error", (f"The session ended: the SSH connection to instance {self.instance} "
                         f"was lost (its sshd closed it or stopped).")

    def close(self) -> None:
        if self.channel is not None:
            try:
                self.channel.close()
            except Exception:
                pass
        if self._transport is not None:
            self._transport.close()
