"""TLS terminator: one void with a TCP listener, the certificate and the key (as fds) and one
end of the socket pair "connections"; no network of its own, no other file.

    terminator.py LISTENER_FD CERT_FD KEY_FD CONNECTIONS_FD

For each client: TLS handshake, read the request (up to the blank line), make a fresh socket
pair, send one end to the orchestrator over CONNECTIONS_FD (it starts a new handler void that
gets only that socket), pass the plaintext request to the handler and its answer back to the
client. The handler never sees the key, the listener or the client's TCP socket.
"""

import os
import socket
import ssl
import sys
import threading

TLS_DIR = "/run/tls"  # this void's private, empty tmpfs (memory only, gone with the void)
MAX_REQUEST = 64 << 10
MAX_RESPONSE = 1 << 20


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def tls_context(cert_fd: int, key_fd: int) -> ssl.SSLContext:
    # load_cert_chain() only takes paths, and a void has no /proc (so no /proc/self/fd/N): the
    # PEM bytes go to files on the void's private tmpfs just long enough to be loaded.
    paths = []
    try:
        for name, data in (("cert.pem", read_all(cert_fd)), ("key.pem", read_all(key_fd))):
            path = f"{TLS_DIR}/{name}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            paths.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(paths[0], paths[1])
        return ctx
    finally:
        for path in paths:
            os.unlink(path)


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def serve(client: socket.socket, ctx: ssl.SSLContext, connections: socket.socket) -> None:
    client.settimeout(10)
    try:
        with ctx.wrap_socket(client, server_side=True) as tls:
            request = read_request(tls)
            ours, theirs = socket.socketpair()
            with ours:
                socket.send_fds(connections, [b"c"], [theirs.fileno()])
                theirs.close()
                ours.settimeout(10)
                ours.sendall(request)
                ours.shutdown(socket.SHUT_WR)
                response = b""
                while len(response) < MAX_RESPONSE:
                    chunk = ours.recv(65536)
                    if not chunk:
                        break
                    response += chunk
            tls.sendall(response)
    except (OSError, ssl.SSLError) as e:
        print(f"terminator: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        client.close()


def main() -> None:
    listener_fd, cert_fd, key_fd, connections_fd = (int(a) for a in sys.argv[1:5])
    ctx = tls_context(cert_fd, key_fd)
    listener = socket.socket(fileno=listener_fd)
    connections = socket.socket(fileno=connections_fd)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, ctx, connections), daemon=True).start()


main()
