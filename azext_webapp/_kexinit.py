"""What an SSH server offers, learned from its own first messages (RFC 4253): the identification
line ("SSH-2.0-OpenSSH_9.2p1 ...") and the cleartext SSH_MSG_KEXINIT that follows it, whose
name-lists say which key exchanges, host keys, ciphers and MACs it accepts.

Used through a tunnel (a local port) by ``create`` (the ssh line it prints) and by ``doctor`` (the
container's algorithms against this machine's OpenSSH and the portal's browser SSH). Plain sockets
only: runs the same on Linux, macOS and Windows.
"""

import socket
import struct
import time
from collections import namedtuple

Offer = namedtuple('Offer', 'banner kex host_keys ciphers macs')

# OpenSSH's client defaults (8.x and 9.x ssh_config(5)); none of them is a CBC cipher.
OPENSSH_DEFAULT_CIPHERS = ('chacha20-poly1305@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr',
                           'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com')
OPENSSH_DEFAULT_MACS = ('umac-64-etm@openssh.com', 'umac-128-etm@openssh.com', 'hmac-sha2-256-etm@openssh.com',
                        'hmac-sha2-512-etm@openssh.com', 'hmac-sha1-etm@openssh.com', 'umac-64@openssh.com',
                        'umac-128@openssh.com', 'hmac-sha2-256', 'hmac-sha2-512', 'hmac-sha1')
# What the documentation tells custom images to offer; OpenSSH still supports them when asked to.
DOCUMENTED_CIPHERS = ('aes128-cbc', 'aes256-cbc', '3des-cbc')   # in the order we would ask for them
DOCUMENTED_MACS = ('hmac-sha1', 'hmac-sha1-96')
# The portal's browser SSH (Kudu's WebSSH on the ssh2 library) offers exactly these.
PORTAL_CIPHERS = ('aes128-cbc', '3des-cbc', 'aes256-cbc', 'aes128-ctr', 'aes256-ctr', 'aes192-ctr')
PORTAL_MACS = ('hmac-sha1', 'hmac-sha1-96', 'hmac-md5-96')
PORTAL_KEX = ('ecdh-sha2-nistp256', 'ecdh-sha2-nistp384', 'ecdh-sha2-nistp521', 'diffie-hellman-group-exchange-sha256',
              'diffie-hellman-group14-sha1')
# Its ssh2 library knows RSA keys only as ssh-rsa (SHA-1 signatures), which OpenSSH 8.8+ sshd no longer offers.
PORTAL_HOST_KEYS = ('ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa')
# Ciphers that authenticate themselves: no MAC is negotiated with them.
AEAD_CIPHERS = ('chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com')

CLIENT_ID = b'SSH-2.0-az_webapp_probe\r\n'
SSH_MSG_KEXINIT = 20


class ProbeError(Exception):
    """kind: 'silent' (closed before a byte), 'timeout', 'not-ssh' (no SSH identification line),
    'kexinit' (identification, but no readable KEXINIT); ``banner`` is set when one was read."""

    def __init__(self, kind, message, banner=None):
        super().__init__(message)
        self.kind = kind
        self.banner = banner


def probe(port, host='127.0.0.1', timeout=10.0):
    """Connect to host:port, read the server's identification line and KEXINIT; an :class:`Offer`."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as err:
        raise ProbeError('silent', f'cannot connect to {host}:{port}: {err}') from None
    with sock:
        reader = _Reader(sock, deadline)
        banner = None
        try:
            sock.sendall(CLIENT_ID)
            for _ in range(20):  # a server may send other lines before its identification (RFC 4253 4.2)
                line = reader.line()
                if line.startswith(b'SSH-'):
                    banner = line.decode('utf-8', 'replace').rstrip('\r\n')
                    break
            else:
                raise ProbeError('not-ssh', 'no SSH identification line')
            length, padding = struct.unpack('>IB', reader.exactly(5))
            if not 12 <= length <= 256 * 1024:
                raise ProbeError('kexinit', f'implausible packet length {length}', banner)
            payload = reader.exactly(length - 1)[:length - 1 - padding]
            return _parse_kexinit(banner, payload)
        except EOFError:
            if reader.received:
                raise ProbeError('not-ssh' if banner is None else 'kexinit',
                                 'the connection closed during the SSH greeting', banner) from None
            raise ProbeError('silent', 'the connection closed before the server sent a byte') from None
        except socket.timeout:
            raise ProbeError('timeout' if reader.received or banner else 'silent',
                             f'no SSH greeting within {timeout:g} seconds', banner) from None
        except OSError as err:
            raise ProbeError('silent' if not reader.received else 'kexinit', str(err), banner) from None


def _parse_kexinit(banner, payload):
    if not payload or payload[0] != SSH_MSG_KEXINIT:
        raise ProbeError('kexinit', 'the first packet is not a KEXINIT', banner)
    lists, offset = [], 17  # message type + 16-byte cookie
    for _ in range(6):      # kex, host key, cipher c2s, cipher s2c, mac c2s, mac s2c
        if offset + 4 > len(payload):
            raise ProbeError('kexinit', 'truncated KEXINIT', banner)
        (size,) = struct.unpack('>I', payload[offset:offset + 4])
        text = payload[offset + 4:offset + 4 + size].decode('ascii', 'replace')
        lists.append(tuple(name for name in text.split(',') if name))
        offset += 4 + size
    kex, host_keys, ciphers, _, macs, _ = lists
    return Offer(banner, kex, host_keys, ciphers, macs)


class _Reader:
    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline
        self.buffer = b''
        self.received = False

    def _more(self):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError()
        self.received = True
        self.buffer += chunk

    def line(self):
        while b'\n' not in self.buffer:
            if len(self.buffer) > 8192:
                raise ProbeError('not-ssh', 'no SSH identification line')
            self._more()
        line, self.buffer = self.buffer.split(b'\n', 1)
        return line + b'\n'

    def exactly(self, count):
        while len(self.buffer) < count:
            self._more()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data


def negotiated(client_ciphers, client_macs, offer):
    """(cipher, mac) the client would negotiate with this offer (the client's order wins, as in
    RFC 4253 7.1); None for one that has no match. An AEAD cipher needs no MAC ('' then)."""
    cipher = next((name for name in client_ciphers if name in offer.ciphers), None)
    if cipher in AEAD_CIPHERS:
        return cipher, ''
    mac = next((name for name in client_macs if name in offer.macs), None)
    return cipher, mac


def extra_options(offer, client_ciphers=OPENSSH_DEFAULT_CIPHERS, client_macs=OPENSSH_DEFAULT_MACS,
                  supported_ciphers=DOCUMENTED_CIPHERS, supported_macs=DOCUMENTED_MACS):
    """The OpenSSH ``-o`` options ([(keyword, value)]) a client with these defaults needs to talk to
    the offer: nothing when its defaults already match; else ``+`` and the first of the supported
    algorithms the server offers (appended, so that the client's own defaults still win wherever
    the server offers them); None when even that finds no common cipher or MAC."""
    options = []
    cipher, mac = negotiated(client_ciphers, client_macs, offer)
    if cipher is None:
        extra = [name for name in supported_ciphers if name in offer.ciphers][:1]
        if not extra:
            return None
        options.append(('Ciphers', '+' + ','.join(extra)))
        cipher, mac = negotiated(list(client_ciphers) + extra, client_macs, offer)
    if mac is None:
        extra = [name for name in supported_macs if name in offer.macs][:1]
        if not extra:
            return None
        options.append(('MACs', '+' + ','.join(extra)))
    return options
